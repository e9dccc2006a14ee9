//! Hand-written declarations of exactly the DPDK (22.11) functions the x86
//! dataplane uses, plus the C shim (`src/shim.c`) that exports DPDK's
//! static-inline fast-path functions (`rte_eth_rx_burst`, `rte_eth_tx_burst`,
//! mbuf and ring bursts) and the port set-up that fills DPDK's configuration
//! structs.
//!
//! DPDK is found with pkg-config (`libdpdk`, Debian's `libdpdk-dev`). Without
//! it this crate builds as declarations only (nothing links against them)
//! unless the `required` feature asks for DPDK, in which case the build fails
//! with what to install.
//!
//! Everything here is raw FFI; the safe layer is `dataplane::dpdk`.
#![allow(non_camel_case_types)]
#![allow(unsafe_code)]

use std::os::raw::{c_char, c_int, c_uint, c_void};

/// The directory of DPDK's driver plugins (`<libdir>/dpdk/pmds-<ABI>`) found
/// at build time; empty when none was.
pub const PMD_DIR: &str = env!("NOS_DPDK_PMD_DIR");
/// The DPDK version pkg-config reported at build time; empty without DPDK.
pub const VERSION: &str = env!("NOS_DPDK_VERSION");
/// Whether the build found DPDK (and linked it).
pub const AVAILABLE: bool = !cfg!(nos_dpdk_missing);

/// The first cache line of `struct rte_mbuf`, as far as the dataplane reads
/// and writes it. `shim.c` asserts these offsets at compile time.
#[repr(C)]
#[derive(Debug)]
pub struct rte_mbuf {
    pub buf_addr: *mut c_void,
    /// `buf_iova`, or `next` in builds without physical addresses.
    pub buf_iova: u64,
    pub data_off: u16,
    pub refcnt: u16,
    pub nb_segs: u16,
    pub port: u16,
    pub ol_flags: u64,
    pub packet_type: u32,
    pub pkt_len: u32,
    pub data_len: u16,
    pub vlan_tci: u16,
    pub hash: [u32; 2],
    pub vlan_tci_outer: u16,
    pub buf_len: u16,
    // The rest of the structure is never touched from Rust.
}

const _: () = assert!(std::mem::offset_of!(rte_mbuf, data_off) == 16);
const _: () = assert!(std::mem::offset_of!(rte_mbuf, nb_segs) == 20);
const _: () = assert!(std::mem::offset_of!(rte_mbuf, pkt_len) == 36);
const _: () = assert!(std::mem::offset_of!(rte_mbuf, data_len) == 40);
const _: () = assert!(std::mem::offset_of!(rte_mbuf, buf_len) == 54);

/// Opaque DPDK objects, only ever handled by pointer.
#[repr(C)]
#[derive(Debug)]
pub struct rte_mempool {
    _private: [u8; 0],
}

#[repr(C)]
#[derive(Debug)]
pub struct rte_ring {
    _private: [u8; 0],
}

#[repr(C)]
#[derive(Debug)]
pub struct rte_lpm {
    _private: [u8; 0],
}

/// `shim.c`'s `struct nos_port_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct nos_port_info {
    pub max_rx_queues: u16,
    pub max_tx_queues: u16,
    pub socket: i32,
    pub rss_offloads: u64,
    pub driver: [c_char; 64],
}

/// `shim.c`'s `struct nos_port_stats`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct nos_port_stats {
    pub ipackets: u64,
    pub opackets: u64,
    pub imissed: u64,
    pub ierrors: u64,
    pub oerrors: u64,
    pub rx_nombuf: u64,
}

/// `RTE_MBUF_DEFAULT_BUF_SIZE`: 2048 bytes of data room plus the 128-byte headroom.
pub const RTE_MBUF_DEFAULT_BUF_SIZE: u16 = 2048 + 128;
/// `RTE_PKTMBUF_HEADROOM` of Debian's build.
pub const RTE_PKTMBUF_HEADROOM: u16 = 128;
/// `SOCKET_ID_ANY`.
pub const SOCKET_ID_ANY: c_int = -1;
/// `RING_F_SP_ENQ | RING_F_SC_DEQ`: one producer, one consumer.
pub const RING_F_SP_ENQ: c_uint = 0x0001;
pub const RING_F_SC_DEQ: c_uint = 0x0002;

extern "C" {
    // EAL (rte_eal.h, rte_lcore.h, rte_errno.h, rte_dev.h).
    pub fn rte_eal_init(argc: c_int, argv: *mut *mut c_char) -> c_int;
    pub fn rte_eal_cleanup() -> c_int;
    pub fn rte_thread_register() -> c_int;
    pub fn rte_thread_unregister();
    pub fn rte_strerror(errnum: c_int) -> *const c_char;
    pub fn rte_socket_id() -> c_uint;
    pub fn rte_dev_probe(devargs: *const c_char) -> c_int;

    // ethdev (rte_ethdev.h).
    pub fn rte_eth_dev_get_port_by_name(name: *const c_char, port_id: *mut u16) -> c_int;
    pub fn rte_eth_dev_count_avail() -> u16;
    pub fn rte_eth_dev_stop(port_id: u16) -> c_int;

    // mbufs and pools (rte_mbuf.h, rte_mempool.h).
    pub fn rte_pktmbuf_pool_create(
        name: *const c_char,
        n: c_uint,
        cache_size: c_uint,
        priv_size: u16,
        data_room_size: u16,
        socket_id: c_int,
    ) -> *mut rte_mempool;
    pub fn rte_mempool_free(mp: *mut rte_mempool);
    pub fn rte_pktmbuf_free_bulk(mbufs: *mut *mut rte_mbuf, count: c_uint);

    // rings (rte_ring.h) and the ring driver (rte_eth_ring.h).
    pub fn rte_ring_create(
        name: *const c_char,
        count: c_uint,
        socket_id: c_int,
        flags: c_uint,
    ) -> *mut rte_ring;
    pub fn rte_ring_free(r: *mut rte_ring);
    pub fn rte_eth_from_rings(
        name: *const c_char,
        rx_queues: *const *mut rte_ring,
        nb_rx_queues: c_uint,
        tx_queues: *const *mut rte_ring,
        nb_tx_queues: c_uint,
        numa_node: c_uint,
    ) -> c_int;

    // IPv4 LPM (rte_lpm.h), for the LPM benchmark's comparison.
    pub fn rte_lpm_add(lpm: *mut rte_lpm, ip: u32, depth: u8, next_hop: u32) -> c_int;
    pub fn rte_lpm_free(lpm: *mut rte_lpm);

    // shim.c.
    pub fn nos_lpm_create(
        name: *const c_char,
        socket: c_int,
        max_rules: u32,
        number_tbl8s: u32,
    ) -> *mut rte_lpm;
    pub fn nos_lpm_lookup_bulk(lpm: *const rte_lpm, ips: *const u32, out: *mut u32, n: c_uint);
    pub fn nos_errno() -> c_int;
    pub fn nos_rx_burst(port: u16, queue: u16, pkts: *mut *mut rte_mbuf, n: u16) -> u16;
    pub fn nos_tx_burst(port: u16, queue: u16, pkts: *mut *mut rte_mbuf, n: u16) -> u16;
    pub fn nos_pktmbuf_alloc_bulk(
        pool: *mut rte_mempool,
        mbufs: *mut *mut rte_mbuf,
        n: c_uint,
    ) -> c_int;
    pub fn nos_ring_enqueue_burst(r: *mut rte_ring, objs: *const *mut c_void, n: c_uint) -> c_uint;
    pub fn nos_ring_dequeue_burst(r: *mut rte_ring, objs: *mut *mut c_void, n: c_uint) -> c_uint;
    pub fn nos_ring_count(r: *const rte_ring) -> c_uint;
    pub fn nos_mempool_avail(mp: *const rte_mempool) -> c_uint;
    pub fn nos_port_info(port: u16, out: *mut nos_port_info) -> c_int;
    pub fn nos_port_start(
        port: u16,
        rxq: u16,
        txq: u16,
        desc: u16,
        pool: *mut rte_mempool,
        promisc: c_int,
        stage: *mut *const c_char,
    ) -> c_int;
    pub fn nos_port_remove(port: u16) -> c_int;
    pub fn nos_port_stats(port: u16, out: *mut nos_port_stats) -> c_int;
}

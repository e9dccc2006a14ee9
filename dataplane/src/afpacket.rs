//! Packet I/O on Linux interfaces with AF_PACKET sockets: frames are received
//! from a ring shared with the kernel (`PACKET_RX_RING`, TPACKET_V2: no system
//! call per batch, the kernel copies each frame in as it arrives) or, where
//! the ring cannot be set up, with `recvmmsg`; they are sent with `sendmmsg`.
//!
//! The kernel strips the outer 802.1Q tag of received frames and reports it in
//! the ring slot's header (or `PACKET_AUXDATA`); [`PacketSocket::recv_batch`]
//! puts it back so the engine sees the frame as it was on the wire. Frames whose L4 checksum the sender left to
//! offload (`TP_STATUS_CSUMNOTREADY`, common on veths) get it completed here.
//!
//! This is the crate's FFI module: every `unsafe` block calls libc with buffers
//! owned by the batch structures below and says why that is sound.
#![allow(unsafe_code)]

use nos_core::checksum::{fold, sum16};
use std::ffi::CString;
use std::io;
use std::mem::{size_of, zeroed};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

const ETH_P_ALL: u16 = 0x0003;
const PACKET_ADD_MEMBERSHIP: libc::c_int = 1;
const PACKET_MR_PROMISC: libc::c_ushort = 1;
const PACKET_AUXDATA: libc::c_int = 8;
const PACKET_FANOUT: libc::c_int = 18;
const PACKET_FANOUT_HASH: u32 = 0;
const PACKET_IGNORE_OUTGOING: libc::c_int = 23;
const PACKET_STATISTICS: libc::c_int = 6;
const PACKET_QDISC_BYPASS: libc::c_int = 20;

/// `struct tpacket_stats` (linux/if_packet.h), what PACKET_STATISTICS reads.
#[repr(C)]
#[derive(Default)]
struct TpacketStats {
    tp_packets: u32,
    tp_drops: u32,
}
const PACKET_RX_RING: libc::c_int = 5;
const PACKET_VERSION: libc::c_int = 10;
const TPACKET_V2: libc::c_int = 1;
/// `SIOCGIFMTU` (linux/sockios.h).
const SIOCGIFMTU: libc::c_ulong = 0x8921;
/// A ring slot the kernel may fill.
const TP_STATUS_KERNEL: u32 = 0;
/// A ring slot holding a frame for us.
const TP_STATUS_USER: u32 = 1;
const TP_STATUS_CSUMNOTREADY: u32 = 1 << 3;
const TP_STATUS_VLAN_VALID: u32 = 1 << 4;
const TP_STATUS_VLAN_TPID_VALID: u32 = 1 << 6;

/// Largest frame received or sent (a 9216-byte jumbo frame plus a VLAN tag).
pub const MAX_FRAME: usize = 9216 + 4 + 14;
/// Frames moved per system call.
pub const BATCH: usize = 32;

#[repr(C)]
#[derive(Clone, Copy)]
struct TpacketAuxdata {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
}

/// `struct tpacket_req` (linux/if_packet.h): the ring's geometry.
#[repr(C)]
struct TpacketReq {
    tp_block_size: u32,
    tp_block_nr: u32,
    tp_frame_size: u32,
    tp_frame_nr: u32,
}

/// `struct tpacket2_hdr` (linux/if_packet.h): the head of a ring slot.
#[repr(C)]
#[derive(Clone, Copy)]
struct Tpacket2Hdr {
    tp_status: u32,
    tp_len: u32,
    tp_snaplen: u32,
    tp_mac: u16,
    tp_net: u16,
    tp_sec: u32,
    tp_nsec: u32,
    tp_vlan_tci: u16,
    tp_vlan_tpid: u16,
    tp_padding: [u8; 4],
}

/// Bytes of receive ring per socket (2048 frames of a 1500-byte MTU).
const RING_BYTES: usize = 4 << 20;
/// Frames a receive ring holds at least.
const MIN_RING_FRAMES: usize = 1024;

/// The receive ring: slots of `frame_size` bytes in memory mapped from the
/// socket; each slot's status word says whether the kernel or we own it.
struct RxRing {
    base: *mut u8,
    len: usize,
    frame_size: usize,
    frames: usize,
    /// The next slot to read.
    next: std::cell::Cell<usize>,
}

// SAFETY: the mapping belongs to this ring alone (the kernel writes only the
// slots it owns); it moves between threads with its socket.
unsafe impl Send for RxRing {}

impl std::fmt::Debug for RxRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RxRing")
            .field("frames", &self.frames)
            .field("frame_size", &self.frame_size)
            .finish()
    }
}

impl Drop for RxRing {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are the mapping made in `RxRing::new`, unmapped once.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

impl RxRing {
    /// The slot size for frames of an interface with MTU `mtu`: the slot
    /// header, the kernel's sockaddr_ll and alignment, then Ethernet and a tag.
    fn frame_size_for(mtu: usize) -> usize {
        (128 + 18 + mtu.clamp(576, 9216))
            .next_power_of_two()
            .max(2048)
    }

    /// Sets up a TPACKET_V2 receive ring on `fd` with slots for frames of the
    /// interface's MTU (a larger frame arrives cut, and counts as an error;
    /// see [`PacketSocket::recv_batch`] for an MTU that grows later).
    fn new(fd: RawFd, ifname: &str) -> io::Result<Self> {
        let frame_size = Self::frame_size_for(interface_mtu(fd, ifname).unwrap_or(1500));
        let block_size = frame_size.max(1 << 16);
        // RING_BYTES, but room for at least MIN_RING_FRAMES frames of any size
        // (a jumbo-frame port's slots are large).
        let bytes = RING_BYTES.max(MIN_RING_FRAMES * frame_size);
        let block_nr = (bytes / block_size).max(1);
        let frames = block_nr * (block_size / frame_size);
        if setsockopt(fd, libc::SOL_PACKET, PACKET_VERSION, &TPACKET_V2) < 0 {
            return Err(last_err("PACKET_VERSION", ifname));
        }
        let req = TpacketReq {
            tp_block_size: block_size as u32,
            tp_block_nr: block_nr as u32,
            tp_frame_size: frame_size as u32,
            tp_frame_nr: frames as u32,
        };
        if setsockopt(fd, libc::SOL_PACKET, PACKET_RX_RING, &req) < 0 {
            return Err(last_err("PACKET_RX_RING", ifname));
        }
        let len = block_size * block_nr;
        // SAFETY: maps the ring the kernel just allocated for `fd`; the result
        // is checked before use.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            let e = last_err("mmap of the receive ring", ifname);
            // Without its mapping the ring would swallow every frame: take it
            // away again (an all-zero request), so recvmmsg gets them.
            let none = TpacketReq {
                tp_block_size: 0,
                tp_block_nr: 0,
                tp_frame_size: 0,
                tp_frame_nr: 0,
            };
            if setsockopt(fd, libc::SOL_PACKET, PACKET_RX_RING, &none) < 0 {
                return Err(last_err("removing the unmapped receive ring", ifname));
            }
            return Err(e);
        }
        Ok(Self {
            base: base.cast(),
            len,
            frame_size,
            frames,
            next: std::cell::Cell::new(0),
        })
    }

    /// The status word of slot `i`, shared with the kernel.
    fn status(&self, i: usize) -> &std::sync::atomic::AtomicU32 {
        // SAFETY: slot `i` (< frames) starts inside the mapping, 16-byte
        // aligned, with its status word first; the kernel and we access that
        // word atomically only.
        unsafe { std::sync::atomic::AtomicU32::from_ptr(self.base.add(i * self.frame_size).cast()) }
    }

    /// Moves up to [`BATCH`] frames from the ring into `batch`, giving their
    /// slots back to the kernel; returns how many.
    fn recv(&self, batch: &mut RecvBatch) -> usize {
        use std::sync::atomic::Ordering;
        let mut n = 0;
        let mut i = self.next.get();
        while n < BATCH {
            let status = self.status(i);
            if status.load(Ordering::Acquire) & TP_STATUS_USER == 0 {
                break;
            }
            // SAFETY: the slot is ours (TP_STATUS_USER, read with Acquire, so
            // the kernel's writes to it are visible); its header is read by
            // copy and its frame lies inside the slot, as checked below.
            let slot = unsafe { self.base.add(i * self.frame_size) };
            let hdr = unsafe { std::ptr::read(slot.cast::<Tpacket2Hdr>()) };
            let mac = usize::from(hdr.tp_mac).min(self.frame_size);
            let room = self.frame_size - mac;
            let len = (hdr.tp_snaplen as usize).min(room);
            // SAFETY: `mac + len` is within the slot (len <= frame_size - mac).
            let data = unsafe { std::slice::from_raw_parts(slot.add(mac), len) };
            let buf = &mut batch.bufs[n];
            buf.clear();
            if hdr.tp_status & TP_STATUS_VLAN_VALID != 0 && len >= 12 {
                let tpid =
                    if hdr.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 && hdr.tp_vlan_tpid != 0 {
                        hdr.tp_vlan_tpid
                    } else {
                        0x8100
                    };
                buf.extend_from_slice(&data[..12]);
                buf.extend_from_slice(&tpid.to_be_bytes());
                buf.extend_from_slice(&hdr.tp_vlan_tci.to_be_bytes());
                buf.extend_from_slice(&data[12..]);
            } else {
                buf.extend_from_slice(data);
            }
            batch.meta[n] = FrameMeta {
                truncated: (hdr.tp_len as usize) > len,
                checksum_fixed: false,
            };
            if hdr.tp_status & TP_STATUS_CSUMNOTREADY != 0 {
                batch.meta[n].checksum_fixed = complete_l4_checksum(buf);
            }
            status.store(TP_STATUS_KERNEL, Ordering::Release);
            i = (i + 1) % self.frames;
            n += 1;
        }
        self.next.set(i);
        n
    }
}

/// The MTU of `ifname`.
fn interface_mtu(fd: RawFd, ifname: &str) -> Option<usize> {
    // SAFETY: ifreq is plain data; all-zero is a valid starting value.
    let mut req: libc::ifreq = unsafe { zeroed() };
    let name = ifname.as_bytes();
    if name.len() >= req.ifr_name.len() {
        return None;
    }
    for (d, s) in req.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    // SAFETY: SIOCGIFMTU reads the NUL-terminated name and writes the MTU
    // into `req`, which outlives the call.
    let rc = unsafe { libc::ioctl(fd, SIOCGIFMTU as _, &mut req) };
    if rc != 0 {
        return None;
    }
    // SAFETY: after a successful SIOCGIFMTU the union holds the MTU.
    let mtu = unsafe { req.ifr_ifru.ifru_mtu };
    usize::try_from(mtu).ok()
}

/// An AF_PACKET socket bound to one interface, non-blocking.
#[derive(Debug)]
pub struct PacketSocket {
    // The ring is unmapped before the socket closes (fields drop in order).
    ring: Option<RxRing>,
    fd: OwnedFd,
    ifname: String,
}

fn last_err(what: &str, ifname: &str) -> io::Error {
    let e = io::Error::last_os_error();
    io::Error::new(e.kind(), format!("{what} on {ifname}: {e}"))
}

fn setsockopt<T>(fd: RawFd, level: libc::c_int, name: libc::c_int, val: &T) -> libc::c_int {
    // SAFETY: `val` points to a live, initialised T and the length passed is its size.
    unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (val as *const T).cast(),
            size_of::<T>() as libc::socklen_t,
        )
    }
}

impl PacketSocket {
    /// Opens a promiscuous socket on `ifname` that sees every frame the interface
    /// receives (but not the ones it sends).
    pub fn open(ifname: &str) -> io::Result<Self> {
        Self::open_in_fanout(ifname, None)
    }

    /// Like [`PacketSocket::open`]; with `Some(group)` the socket joins that
    /// fanout group of the interface, and the kernel spreads received frames
    /// over the group's sockets by a hash of their flow (one socket per
    /// forwarding worker: the AF_PACKET counterpart of RSS queues).
    pub fn open_in_fanout(ifname: &str, group: Option<u16>) -> io::Result<Self> {
        let cname = CString::new(ifname).map_err(|_| {
            io::Error::new(io::ErrorKind::InvalidInput, "interface name contains NUL")
        })?;
        // SAFETY: `cname` is a valid NUL-terminated string.
        let ifindex = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if ifindex == 0 {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("no network interface named {ifname:?}"),
            ));
        }
        // SAFETY: plain socket(2) call; the result is checked below.
        let raw = unsafe {
            libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                i32::from(ETH_P_ALL.to_be()),
            )
        };
        if raw < 0 {
            return Err(last_err("socket(AF_PACKET)", ifname));
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        if setsockopt(raw, libc::SOL_PACKET, PACKET_AUXDATA, &one) < 0 {
            return Err(last_err("PACKET_AUXDATA", ifname));
        }
        // Without this the socket would read back every frame it sends. Kernels
        // before 4.20 lack it; then sent frames come back with our own source MAC
        // and are dropped by L3 admit, so failure here is not fatal.
        let _ = setsockopt(raw, libc::SOL_PACKET, PACKET_IGNORE_OUTGOING, &one);
        // Frames go straight to the device's driver, past the qdisc layer, as
        // a switch's forwarding path would (kernels before 3.14 lack it).
        let _ = setsockopt(raw, libc::SOL_PACKET, PACKET_QDISC_BYPASS, &one);
        let bufsize: libc::c_int = 4 << 20;
        let _ = setsockopt(raw, libc::SOL_SOCKET, libc::SO_RCVBUF, &bufsize);
        let _ = setsockopt(raw, libc::SOL_SOCKET, libc::SO_SNDBUF, &bufsize);

        // SAFETY: sockaddr_ll is plain data; all-zero is a valid starting value.
        let mut sll: libc::sockaddr_ll = unsafe { zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_protocol = ETH_P_ALL.to_be();
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: `sll` is a valid sockaddr_ll and the length is its size.
        let rc = unsafe {
            libc::bind(
                raw,
                (&sll as *const libc::sockaddr_ll).cast(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(last_err("bind", ifname));
        }
        // SAFETY: packet_mreq is plain data; all-zero is a valid starting value.
        let mut mreq: libc::packet_mreq = unsafe { zeroed() };
        mreq.mr_ifindex = ifindex as i32;
        mreq.mr_type = PACKET_MR_PROMISC;
        if setsockopt(raw, libc::SOL_PACKET, PACKET_ADD_MEMBERSHIP, &mreq) < 0 {
            return Err(last_err("promiscuous mode", ifname));
        }
        let ring = match RxRing::new(raw, ifname) {
            Ok(r) => Some(r),
            Err(e) => {
                tracing::debug!("no receive ring ({e}); receiving with recvmmsg");
                None
            }
        };
        if let Some(group) = group {
            let arg: u32 = u32::from(group) | (PACKET_FANOUT_HASH << 16);
            if setsockopt(raw, libc::SOL_PACKET, PACKET_FANOUT, &arg) < 0 {
                return Err(last_err("PACKET_FANOUT", ifname));
            }
        }
        Ok(Self {
            ring,
            fd,
            ifname: ifname.to_string(),
        })
    }

    pub fn ifname(&self) -> &str {
        &self.ifname
    }

    /// Whether frames arrive through a ring shared with the kernel.
    pub fn has_ring(&self) -> bool {
        self.ring.is_some()
    }

    /// Receives up to [`BATCH`] frames into `batch` without blocking; returns how many.
    ///
    /// A frame cut by the receive ring makes the socket look at the
    /// interface's MTU again: when it has grown past what the ring's slots
    /// hold, the ring is set up anew with larger slots (the frames still in
    /// the old one are lost with it).
    pub fn recv_batch(&mut self, batch: &mut RecvBatch) -> io::Result<usize> {
        let Some(ring) = &self.ring else {
            return self.recv_mmsg(batch);
        };
        let n = ring.recv(batch);
        if n == 0 {
            // An empty ring: the socket may still hold an error (the link
            // went down) that keeps poll() waking us, or a frame queued
            // outside the ring; a receive call clears both.
            return self.recv_mmsg(batch);
        }
        if batch.meta[..n].iter().any(|m| m.truncated) {
            self.fit_ring_to_mtu();
        }
        Ok(n)
    }

    /// Sets the receive ring up again if the interface's MTU now needs larger
    /// slots; when that fails, frames are received with recvmmsg instead
    /// (which takes frames of any size).
    fn fit_ring_to_mtu(&mut self) {
        let fd = self.fd.as_raw_fd();
        let Some(mtu) = interface_mtu(fd, &self.ifname) else {
            return;
        };
        let old = match &self.ring {
            Some(r) if RxRing::frame_size_for(mtu) > r.frame_size => r.frame_size,
            _ => return,
        };
        // The old mapping goes first: the kernel frees a ring only when it
        // is no longer mapped; an all-zero request frees it.
        self.ring = None;
        // SAFETY: tpacket_req is plain data; all-zero asks for no ring.
        let none: TpacketReq = unsafe { zeroed() };
        if setsockopt(fd, libc::SOL_PACKET, PACKET_RX_RING, &none) < 0 {
            let e = last_err("releasing the receive ring", &self.ifname);
            tracing::warn!(interface = %self.ifname, mtu, "{e}; receiving with recvmmsg");
            return;
        }
        match RxRing::new(fd, &self.ifname) {
            Ok(r) => {
                tracing::info!(
                    interface = %self.ifname,
                    mtu,
                    "MTU grew: receive ring slots {old} -> {} bytes",
                    r.frame_size
                );
                self.ring = Some(r);
            }
            Err(e) => {
                tracing::warn!(interface = %self.ifname, mtu, "{e}; receiving with recvmmsg");
            }
        }
    }

    fn recv_mmsg(&self, batch: &mut RecvBatch) -> io::Result<usize> {
        for (i, buf) in batch.bufs.iter_mut().enumerate() {
            // 4 bytes of room in front for a VLAN tag the kernel stripped,
            // then the kernel writes into the spare capacity (nothing is
            // zeroed per frame).
            buf.clear();
            buf.reserve(MAX_FRAME);
            buf.extend_from_slice(&[0; 4]);
            batch.iov[i] = libc::iovec {
                iov_base: buf.spare_capacity_mut().as_mut_ptr().cast(),
                iov_len: MAX_FRAME - 4,
            };
            let hdr = &mut batch.hdrs[i].msg_hdr;
            hdr.msg_iov = &mut batch.iov[i];
            hdr.msg_iovlen = 1;
            hdr.msg_control = batch.cmsg[i].as_mut_ptr().cast();
            // In bytes: the kernel drops the auxdata (MSG_CTRUNC) if it does not fit.
            hdr.msg_controllen = std::mem::size_of_val(&batch.cmsg[i]);
            hdr.msg_name = std::ptr::null_mut();
            hdr.msg_namelen = 0;
            hdr.msg_flags = 0;
            batch.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points at an iovec and control buffer owned by
        // `batch`, which outlives the call; BATCH headers are initialised above.
        let n = unsafe {
            libc::recvmmsg(
                self.fd.as_raw_fd(),
                batch.hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(last_err("recvmmsg", &self.ifname)),
            };
        }
        let n = n as usize;
        for i in 0..n {
            let len = (batch.hdrs[i].msg_len as usize).min(MAX_FRAME - 4);
            // SAFETY: recvmmsg wrote `len` bytes (at most the iovec's length)
            // into the spare capacity right after the 4 initialised bytes.
            unsafe { batch.bufs[i].set_len(4 + len) };
            // A cut frame, or one whose VLAN/checksum metadata was cut, cannot be
            // handled correctly; the caller counts it as an error.
            let truncated =
                batch.hdrs[i].msg_hdr.msg_flags & (libc::MSG_TRUNC | libc::MSG_CTRUNC) != 0;
            let aux = auxdata(&batch.hdrs[i].msg_hdr);
            let buf = &mut batch.bufs[i];
            batch.meta[i] = FrameMeta {
                truncated,
                checksum_fixed: false,
            };
            match aux {
                Some(a) if a.tp_status & TP_STATUS_VLAN_VALID != 0 => {
                    let tpid =
                        if a.tp_status & TP_STATUS_VLAN_TPID_VALID != 0 && a.tp_vlan_tpid != 0 {
                            a.tp_vlan_tpid
                        } else {
                            0x8100
                        };
                    // Move the MACs 4 bytes forward into the headroom and put the tag
                    // between them and the EtherType.
                    buf.copy_within(4..16, 0);
                    buf[12..14].copy_from_slice(&tpid.to_be_bytes());
                    buf[14..16].copy_from_slice(&a.tp_vlan_tci.to_be_bytes());
                    buf.truncate(len + 4);
                }
                _ => {
                    buf.copy_within(4..4 + len, 0);
                    buf.truncate(len);
                }
            }
            if let Some(a) = aux {
                if a.tp_status & TP_STATUS_CSUMNOTREADY != 0 {
                    batch.meta[i].checksum_fixed = complete_l4_checksum(buf);
                }
            }
        }
        Ok(n)
    }

    /// Sends frames with `sendmmsg` (repeated while the kernel takes only part).
    /// A frame the kernel refuses (too big for the device, no buffer space) is
    /// skipped and the ones after it are still sent. Returns how many were sent.
    pub fn send_batch(&self, frames: &[&[u8]]) -> io::Result<usize> {
        let mut sent = 0;
        let mut first_error: Option<io::Error> = None;
        for chunk in frames.chunks(BATCH) {
            let mut iov: [libc::iovec; BATCH] = [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; BATCH];
            // SAFETY: mmsghdr is plain data; all-zero is a valid starting value.
            let mut hdrs: [libc::mmsghdr; BATCH] = unsafe { zeroed() };
            for (i, f) in chunk.iter().enumerate() {
                iov[i] = libc::iovec {
                    iov_base: f.as_ptr() as *mut libc::c_void,
                    iov_len: f.len(),
                };
                hdrs[i].msg_hdr.msg_iov = &mut iov[i];
                hdrs[i].msg_hdr.msg_iovlen = 1;
            }
            let mut off = 0;
            while off < chunk.len() {
                // SAFETY: headers point at iovecs over frames borrowed for the call;
                // the kernel only reads them.
                let n = unsafe {
                    libc::sendmmsg(
                        self.fd.as_raw_fd(),
                        hdrs[off..].as_mut_ptr(),
                        (chunk.len() - off) as u32,
                        libc::MSG_DONTWAIT,
                    )
                };
                if n <= 0 {
                    let e = io::Error::last_os_error();
                    match e.kind() {
                        io::ErrorKind::Interrupted => continue,
                        // The queue is full: the rest of this chunk is dropped.
                        io::ErrorKind::WouldBlock => break,
                        _ => {
                            // Frame `off` was refused; skip it and go on.
                            first_error.get_or_insert(e);
                            off += 1;
                            continue;
                        }
                    }
                }
                off += n as usize;
                sent += n as usize;
            }
        }
        match (sent, first_error) {
            (0, Some(e)) => Err(io::Error::new(
                e.kind(),
                format!("sendmmsg on {}: {e}", self.ifname),
            )),
            _ => Ok(sent),
        }
    }
}

impl PacketSocket {
    /// Frames the kernel dropped because this socket's receive queue was
    /// full, since the last call (PACKET_STATISTICS resets on reading).
    pub fn take_dropped(&mut self) -> io::Result<u64> {
        let mut st = TpacketStats::default();
        let mut len = size_of::<TpacketStats>() as libc::socklen_t;
        // SAFETY: `st` is a live TpacketStats and `len` its size; the kernel
        // writes at most `len` bytes and updates `len`.
        let r = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_STATISTICS,
                (&mut st as *mut TpacketStats).cast(),
                &mut len,
            )
        };
        if r < 0 {
            return Err(last_err("PACKET_STATISTICS", &self.ifname));
        }
        Ok(u64::from(st.tp_drops))
    }
}

impl crate::backend::PacketIo for PacketSocket {
    fn describe(&self) -> String {
        format!("AF_PACKET {}", self.ifname)
    }

    fn take_lost(&mut self) -> u64 {
        self.take_dropped().unwrap_or(0)
    }

    fn readiness_fd(&self) -> Option<RawFd> {
        Some(self.fd.as_raw_fd())
    }

    fn receive(
        &mut self,
        rx: &mut crate::backend::RxBurst,
    ) -> io::Result<crate::backend::Received> {
        self.recv_batch(&mut rx.heap)
            .map(crate::backend::Received::Heap)
    }

    fn transmit(&mut self, frames: crate::backend::TxFrames<'_>) -> io::Result<usize> {
        match frames {
            crate::backend::TxFrames::Bytes(list) => self.send_batch(list),
            #[cfg(feature = "dpdk")]
            crate::backend::TxFrames::Mbufs(burst) => {
                // The frames stay in their buffers, which the caller frees.
                use crate::engine::Frame;
                let mut refs: [&[u8]; BATCH] = [&[]; BATCH];
                let mut n = 0;
                for i in 0..burst.len() {
                    if let Some(m) = burst.get(i) {
                        refs[n] = m.bytes();
                        n += 1;
                    }
                }
                self.send_batch(&refs[..n])
            }
        }
    }
}

impl AsRawFd for PacketSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

fn auxdata(hdr: &libc::msghdr) -> Option<TpacketAuxdata> {
    // SAFETY: the CMSG_* macros walk the control buffer the kernel filled in for
    // this header, bounded by msg_controllen; the data is copied out unaligned.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(hdr);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == PACKET_AUXDATA {
                let data = libc::CMSG_DATA(c);
                return Some(std::ptr::read_unaligned(data.cast::<TpacketAuxdata>()));
            }
            c = libc::CMSG_NXTHDR(hdr, c);
        }
    }
    None
}

/// Per-frame facts from the last [`PacketSocket::recv_batch`].
#[derive(Clone, Copy, Debug, Default)]
pub struct FrameMeta {
    /// The frame was longer than [`MAX_FRAME`] and was cut.
    pub truncated: bool,
    /// The sender left the L4 checksum to offload and it was completed here.
    pub checksum_fixed: bool,
}

/// Reusable buffers for [`PacketSocket::recv_batch`].
pub struct RecvBatch {
    pub bufs: Vec<Vec<u8>>,
    pub meta: [FrameMeta; BATCH],
    iov: [libc::iovec; BATCH],
    hdrs: [libc::mmsghdr; BATCH],
    cmsg: Vec<[u64; 8]>,
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("slots", &self.bufs.len())
            .finish()
    }
}

// SAFETY: the raw pointers inside the headers only ever point into this struct's
// own buffers and are rewritten before every use.
#[allow(unsafe_code)]
unsafe impl Send for RecvBatch {}

impl Default for RecvBatch {
    fn default() -> Self {
        Self {
            bufs: (0..BATCH).map(|_| Vec::with_capacity(MAX_FRAME)).collect(),
            meta: [FrameMeta::default(); BATCH],
            iov: [libc::iovec {
                iov_base: std::ptr::null_mut(),
                iov_len: 0,
            }; BATCH],
            // SAFETY: mmsghdr is plain data; all-zero is a valid starting value.
            hdrs: unsafe { zeroed() },
            cmsg: vec![[0u64; 8]; BATCH],
        }
    }
}

/// Completes the TCP or UDP checksum of an IPv4/IPv6 frame whose sender left it
/// to hardware offload. Returns whether a checksum was written.
pub fn complete_l4_checksum(frame: &mut [u8]) -> bool {
    let mut off = 12;
    let mut ethertype = match frame.get(12..14) {
        Some(b) => u16::from_be_bytes([b[0], b[1]]),
        None => return false,
    };
    if ethertype == 0x8100 {
        off += 4;
        ethertype = match frame.get(off..off + 2) {
            Some(b) => u16::from_be_bytes([b[0], b[1]]),
            None => return false,
        };
    }
    let ip = off + 2;
    let (proto, l4, l4_len, pseudo) = match ethertype {
        0x0800 => {
            let Some(h) = frame.get(ip..ip + 20) else {
                return false;
            };
            let ihl = usize::from(h[0] & 0x0f) * 4;
            let total = usize::from(u16::from_be_bytes([h[2], h[3]]));
            if ihl < 20 || total < ihl || ip + total > frame.len() {
                return false;
            }
            let mut sum = 0u32;
            sum = sum16(sum, &h[12..20]);
            sum += u32::from(h[9]);
            sum += (total - ihl) as u32;
            (h[9], ip + ihl, total - ihl, sum)
        }
        0x86dd => {
            let Some(h) = frame.get(ip..ip + 40) else {
                return false;
            };
            let plen = usize::from(u16::from_be_bytes([h[4], h[5]]));
            if ip + 40 + plen > frame.len() {
                return false;
            }
            let mut sum = 0u32;
            sum = sum16(sum, &h[8..40]);
            sum += u32::from(h[6]);
            sum += plen as u32;
            (h[6], ip + 40, plen, sum)
        }
        _ => return false,
    };
    let csum_at = match proto {
        6 if l4_len >= 20 => l4 + 16,
        17 if l4_len >= 8 => l4 + 6,
        _ => return false,
    };
    frame[csum_at] = 0;
    frame[csum_at + 1] = 0;
    let sum = sum16(pseudo, &frame[l4..l4 + l4_len]);
    let mut c = fold(sum);
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    frame[csum_at..csum_at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

/// An eventfd used to wake the I/O thread's poll when the control plane has
/// something for it.
#[derive(Debug)]
pub struct Waker {
    fd: OwnedFd,
}

impl Waker {
    pub fn new() -> io::Result<Self> {
        // SAFETY: plain eventfd(2) call; the result is checked.
        let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a fresh descriptor that nothing else owns.
        Ok(Self {
            fd: unsafe { OwnedFd::from_raw_fd(raw) },
        })
    }

    pub fn wake(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
        let _ = unsafe { libc::write(self.fd.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Clears pending wake-ups.
    pub fn drain(&self) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a live u64 from our own non-blocking eventfd.
        let _ = unsafe { libc::read(self.fd.as_raw_fd(), (&mut v as *mut u64).cast(), 8) };
    }
}

impl AsRawFd for Waker {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// Waits until one of `fds` is readable or `timeout_ms` passes; returns the
/// readiness of each (`true` = readable or in error, so the caller reads and sees).
pub fn poll_readable(fds: &[RawFd], timeout_ms: i32, ready: &mut Vec<bool>) -> io::Result<()> {
    let mut pfds: Vec<libc::pollfd> = fds
        .iter()
        .map(|&fd| libc::pollfd {
            fd,
            events: libc::POLLIN,
            revents: 0,
        })
        .collect();
    // SAFETY: `pfds` is a live array of pollfd of the length passed.
    let rc = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
    ready.clear();
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            ready.resize(fds.len(), false);
            return Ok(());
        }
        return Err(e);
    }
    ready.extend(pfds.iter().map(|p| p.revents != 0));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completes_udp_checksum_over_ipv4() {
        // 14 Ethernet + 20 IPv4 + 8 UDP + 4 payload.
        let mut f = vec![0u8; 46];
        f[12..14].copy_from_slice(&0x0800u16.to_be_bytes());
        let ip = &mut f[14..34];
        ip[0] = 0x45;
        ip[2..4].copy_from_slice(&32u16.to_be_bytes());
        ip[8] = 64;
        ip[9] = 17;
        ip[12..16].copy_from_slice(&[192, 0, 2, 1]);
        ip[16..20].copy_from_slice(&[198, 51, 100, 1]);
        f[34..36].copy_from_slice(&1234u16.to_be_bytes());
        f[36..38].copy_from_slice(&5001u16.to_be_bytes());
        f[38..40].copy_from_slice(&12u16.to_be_bytes());
        f[42..46].copy_from_slice(b"abcd");
        assert!(complete_l4_checksum(&mut f));
        // Verifying: the one's-complement sum over pseudo header and segment is 0xffff.
        let mut sum = sum16(0, &f[26..34]);
        sum += 17 + 12;
        sum = sum16(sum, &f[34..46]);
        assert_eq!(fold(sum), 0);
    }

    /// Runs `f` on a thread of its own in a new network namespace whose
    /// loopback is up; returns what `f` returns.
    fn in_own_namespace<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        std::thread::spawn(move || {
            // SAFETY: unshare(2) moves only this thread into a new network
            // namespace; the thread ends with `f`.
            if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                panic!("unshare(CLONE_NEWNET): {}", io::Error::last_os_error());
            }
            let up = std::process::Command::new("ip")
                .args(["link", "set", "lo", "up"])
                .status()
                .expect("ip");
            assert!(up.success());
            f()
        })
        .join()
        .unwrap()
    }

    /// A socket that never reads, on the loopback of a network namespace of
    /// its own, loses frames once its queue is full, and says how many.
    #[test]
    fn counts_frames_its_full_queue_lost() {
        let lost = in_own_namespace(|| {
            let mut idle = PacketSocket::open("lo").expect("receiver");
            let sender = PacketSocket::open("lo").expect("sender");
            assert_eq!(idle.take_dropped().unwrap(), 0);
            let mut frame = vec![0u8; 1000];
            frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
            let frames: Vec<&[u8]> = vec![&frame; 64];
            for _ in 0..300 {
                sender.send_batch(&frames).expect("send");
            }
            let first = idle.take_dropped().unwrap();
            let again = idle.take_dropped().unwrap();
            (first, again)
        });
        assert!(lost.0 > 1000, "19,200 frames into a 4 MiB queue: {lost:?}");
        assert_eq!(lost.1, 0, "reading the statistics resets them");
    }

    /// Frames sent on the loopback of a network namespace of its own arrive,
    /// byte for byte, through the receiver's ring.
    #[test]
    fn receives_through_its_ring_what_was_sent() {
        in_own_namespace(|| {
            let mut receiver = PacketSocket::open("lo").expect("receiver");
            assert!(receiver.has_ring(), "the receive ring is set up");
            let sender = PacketSocket::open("lo").expect("sender");
            let frames: Vec<Vec<u8>> = [60usize, 1000, 1514, 9000]
                .iter()
                .cycle()
                .take(200)
                .enumerate()
                .map(|(i, &len)| {
                    let mut f = vec![(i % 251) as u8; len];
                    f[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
                    f
                })
                .collect();
            let mut got: Vec<Vec<u8>> = Vec::new();
            let mut batch = RecvBatch::default();
            let mut sent = 0;
            for chunk in frames.chunks(20) {
                let refs: Vec<&[u8]> = chunk.iter().map(Vec::as_slice).collect();
                assert_eq!(sender.send_batch(&refs).expect("send"), refs.len());
                sent += refs.len();
                let end = std::time::Instant::now() + std::time::Duration::from_secs(2);
                while got.len() < sent && std::time::Instant::now() < end {
                    let n = receiver.recv_batch(&mut batch).expect("receive");
                    for (i, b) in batch.bufs[..n].iter().enumerate() {
                        assert!(!batch.meta[i].truncated);
                        if b[12..14] == 0x88b5u16.to_be_bytes() {
                            got.push(b.clone());
                        }
                    }
                }
            }
            assert_eq!(got.len(), frames.len());
            assert!(got == frames, "frames arrive whole and in order");
        });
    }

    /// An interface whose MTU grows after its socket opened: the first large
    /// frame arrives cut (and is counted as such), the socket sets its ring
    /// up for the new MTU, and the next large frames arrive whole; alone and
    /// in a fanout group (as with several workers).
    #[test]
    fn a_grown_mtu_resizes_the_receive_ring() {
        for group in [None, Some(0x77)] {
            let (small, big, seen, len) = in_own_namespace(move || {
                let ip = |args: &[&str]| {
                    let st = std::process::Command::new("ip")
                        .args(args)
                        .status()
                        .expect("ip");
                    assert!(st.success(), "ip {args:?}");
                };
                ip(&["link", "set", "lo", "mtu", "1500"]);
                let mut receiver = PacketSocket::open_in_fanout("lo", group).expect("receiver");
                let sender = PacketSocket::open("lo").expect("sender");
                let small = receiver.ring.as_ref().expect("a receive ring").frame_size;
                ip(&["link", "set", "lo", "mtu", "9000"]);
                let mut frame = vec![7u8; 6000];
                frame[12..14].copy_from_slice(&0x88b5u16.to_be_bytes());
                // (length, cut) of each test frame received.
                let mut seen: Vec<(usize, bool)> = Vec::new();
                let mut batch = RecvBatch::default();
                for _ in 0..3 {
                    assert_eq!(sender.send_batch(&[&frame]).expect("send"), 1);
                    let before = seen.len();
                    let end = std::time::Instant::now() + std::time::Duration::from_secs(2);
                    while seen.len() == before && std::time::Instant::now() < end {
                        let n = receiver.recv_batch(&mut batch).expect("receive");
                        for i in 0..n {
                            if batch.bufs[i].get(12..14) == Some(&0x88b5u16.to_be_bytes()[..]) {
                                seen.push((batch.bufs[i].len(), batch.meta[i].truncated));
                            }
                        }
                    }
                }
                let big = receiver.ring.as_ref().map_or(0, |r| r.frame_size);
                (small, big, seen, frame.len())
            });
            assert!(
                small < len && big > len,
                "{group:?}: slots {small} -> {big} bytes"
            );
            assert_eq!(seen.len(), 3, "{group:?}: every frame arrived: {seen:?}");
            assert!(
                seen[0].1 && seen[0].0 < len,
                "{group:?}: the first arrived cut: {seen:?}"
            );
            assert_eq!(
                &seen[1..],
                &[(len, false), (len, false)],
                "{group:?}: then whole"
            );
        }
    }

    #[test]
    fn ignores_what_it_cannot_parse() {
        assert!(!complete_l4_checksum(&mut []));
        assert!(!complete_l4_checksum(&mut [0u8; 20]));
        let mut arp = vec![0u8; 60];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert!(!complete_l4_checksum(&mut arp));
    }
}

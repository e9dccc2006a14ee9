/*
 * The C side of dpdk-sys: DPDK's fast-path functions are static inline in its
 * headers (rte_eth_rx_burst, rte_eth_tx_burst, the ring and mbuf-pool burst
 * calls), so Rust cannot call them directly; each gets an exported wrapper
 * here. Port set-up is here too, because it fills DPDK configuration structs
 * whose layout Rust would otherwise have to mirror.
 *
 * The static assertions pin the layout of the first cache line of struct
 * rte_mbuf that src/lib.rs mirrors: a DPDK whose layout differs fails to build
 * instead of corrupting packets.
 *
 * SPDX-License-Identifier: GPL-3.0-or-later
 */
#include <rte_config.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <rte_common.h>
#include <rte_dev.h>
#include <rte_eal.h>
#include <rte_errno.h>
#include <rte_ethdev.h>
#include <rte_lcore.h>
#include <rte_lpm.h>
#include <rte_mbuf.h>
#include <rte_mempool.h>
#include <rte_ring.h>

_Static_assert(offsetof(struct rte_mbuf, buf_addr) == 0, "rte_mbuf.buf_addr moved");
_Static_assert(offsetof(struct rte_mbuf, data_off) == 16, "rte_mbuf.data_off moved");
_Static_assert(offsetof(struct rte_mbuf, refcnt) == 18, "rte_mbuf.refcnt moved");
_Static_assert(offsetof(struct rte_mbuf, nb_segs) == 20, "rte_mbuf.nb_segs moved");
_Static_assert(offsetof(struct rte_mbuf, port) == 22, "rte_mbuf.port moved");
_Static_assert(offsetof(struct rte_mbuf, ol_flags) == 24, "rte_mbuf.ol_flags moved");
_Static_assert(offsetof(struct rte_mbuf, packet_type) == 32, "rte_mbuf.packet_type moved");
_Static_assert(offsetof(struct rte_mbuf, pkt_len) == 36, "rte_mbuf.pkt_len moved");
_Static_assert(offsetof(struct rte_mbuf, data_len) == 40, "rte_mbuf.data_len moved");
_Static_assert(offsetof(struct rte_mbuf, vlan_tci) == 42, "rte_mbuf.vlan_tci moved");
_Static_assert(offsetof(struct rte_mbuf, buf_len) == 54, "rte_mbuf.buf_len moved");
_Static_assert(sizeof(void *) == 8, "dpdk-sys assumes a 64-bit target");
_Static_assert(RTE_PKTMBUF_HEADROOM == 128, "src/lib.rs assumes a 128-byte headroom");
_Static_assert(RTE_MBUF_DEFAULT_BUF_SIZE == 2048 + 128, "src/lib.rs assumes 2048 bytes of data room");
_Static_assert(RING_F_SP_ENQ == 1 && RING_F_SC_DEQ == 2, "ring flags changed");

int nos_errno(void)
{
	return rte_errno;
}

uint16_t nos_rx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_rx_burst(port, queue, pkts, n);
}

uint16_t nos_tx_burst(uint16_t port, uint16_t queue, struct rte_mbuf **pkts, uint16_t n)
{
	return rte_eth_tx_burst(port, queue, pkts, n);
}

/* 0 on success (all n allocated and reset), negative when the pool lacks n. */
int nos_pktmbuf_alloc_bulk(struct rte_mempool *pool, struct rte_mbuf **mbufs, unsigned int n)
{
	return rte_pktmbuf_alloc_bulk(pool, mbufs, n);
}

unsigned int nos_ring_enqueue_burst(struct rte_ring *r, void *const *objs, unsigned int n)
{
	return rte_ring_enqueue_burst(r, objs, n, NULL);
}

unsigned int nos_ring_dequeue_burst(struct rte_ring *r, void **objs, unsigned int n)
{
	return rte_ring_dequeue_burst(r, objs, n, NULL);
}

unsigned int nos_ring_count(const struct rte_ring *r)
{
	return rte_ring_count(r);
}

unsigned int nos_mempool_avail(const struct rte_mempool *mp)
{
	return rte_mempool_avail_count(mp);
}

/* What the dataplane needs to know about a port before configuring it. */
struct nos_port_info {
	uint16_t max_rx_queues;
	uint16_t max_tx_queues;
	int32_t socket;
	uint64_t rss_offloads;
	char driver[64];
};

int nos_port_info(uint16_t port, struct nos_port_info *out)
{
	struct rte_eth_dev_info info;
	int rc = rte_eth_dev_info_get(port, &info);
	if (rc != 0)
		return rc;
	memset(out, 0, sizeof(*out));
	out->max_rx_queues = info.max_rx_queues;
	out->max_tx_queues = info.max_tx_queues;
	out->socket = rte_eth_dev_socket_id(port);
	out->rss_offloads = info.flow_type_rss_offloads;
	if (info.driver_name != NULL)
		strncpy(out->driver, info.driver_name, sizeof(out->driver) - 1);
	return 0;
}

/*
 * Configures `rxq` receive and `txq` transmit queues of `desc` descriptors,
 * receive buffers from `pool`, spreads received flows over the receive queues
 * by an RSS hash of addresses and ports when there are several and the device
 * hashes, puts the port in promiscuous mode when asked (a router port sees
 * frames for its own MACs, which the host does not know), and starts it.
 * VLAN tags are left in the frames (no VLAN strip offload). Returns 0 or a
 * negative errno-style code; `stage` names the step that failed.
 */
int nos_port_start(uint16_t port, uint16_t rxq, uint16_t txq, uint16_t desc,
		   struct rte_mempool *pool, int promisc, const char **stage)
{
	struct rte_eth_conf conf;
	struct rte_eth_dev_info info;
	int rc;
	uint16_t q;
	uint16_t rx_desc = desc, tx_desc = desc;

	memset(&conf, 0, sizeof(conf));
	*stage = "rte_eth_dev_info_get";
	rc = rte_eth_dev_info_get(port, &info);
	if (rc != 0)
		return rc;
	if (rxq > 1 && info.flow_type_rss_offloads != 0) {
		conf.rxmode.mq_mode = RTE_ETH_MQ_RX_RSS;
		conf.rx_adv_conf.rss_conf.rss_key = NULL;
		conf.rx_adv_conf.rss_conf.rss_hf =
			(RTE_ETH_RSS_IP | RTE_ETH_RSS_UDP | RTE_ETH_RSS_TCP) &
			info.flow_type_rss_offloads;
	}
	*stage = "rte_eth_dev_configure";
	rc = rte_eth_dev_configure(port, rxq, txq, &conf);
	if (rc != 0)
		return rc;
	*stage = "rte_eth_dev_adjust_nb_rx_tx_desc";
	rc = rte_eth_dev_adjust_nb_rx_tx_desc(port, &rx_desc, &tx_desc);
	if (rc != 0)
		return rc;
	for (q = 0; q < rxq; q++) {
		*stage = "rte_eth_rx_queue_setup";
		rc = rte_eth_rx_queue_setup(port, q, rx_desc, rte_eth_dev_socket_id(port), NULL, pool);
		if (rc != 0)
			return rc;
	}
	for (q = 0; q < txq; q++) {
		*stage = "rte_eth_tx_queue_setup";
		rc = rte_eth_tx_queue_setup(port, q, tx_desc, rte_eth_dev_socket_id(port), NULL);
		if (rc != 0)
			return rc;
	}
	*stage = "rte_eth_dev_start";
	rc = rte_eth_dev_start(port);
	if (rc != 0)
		return rc;
	if (promisc) {
		/* Drivers without the notion (ring, null) answer -ENOTSUP: harmless. */
		rc = rte_eth_promiscuous_enable(port);
		if (rc != 0 && rc != -ENOTSUP) {
			*stage = "rte_eth_promiscuous_enable";
			rte_eth_dev_stop(port);
			return rc;
		}
	}
	*stage = "";
	return 0;
}

/* Stops a port and removes its device (which closes it), so the same device
 * name can be probed again. */
int nos_port_remove(uint16_t port)
{
	struct rte_eth_dev_info info;
	int rc = rte_eth_dev_info_get(port, &info);
	rte_eth_dev_stop(port);
	if (rc == 0 && info.device != NULL) {
		rc = rte_dev_remove(info.device);
		if (rc == 0)
			return 0;
	}
	return rte_eth_dev_close(port);
}

/* The counters the driver keeps that the dataplane cannot see itself. */
struct nos_port_stats {
	uint64_t ipackets;
	uint64_t opackets;
	uint64_t imissed;
	uint64_t ierrors;
	uint64_t oerrors;
	uint64_t rx_nombuf;
};

int nos_port_stats(uint16_t port, struct nos_port_stats *out)
{
	struct rte_eth_stats s;
	int rc = rte_eth_stats_get(port, &s);
	if (rc != 0)
		return rc;
	out->ipackets = s.ipackets;
	out->opackets = s.opackets;
	out->imissed = s.imissed;
	out->ierrors = s.ierrors;
	out->oerrors = s.oerrors;
	out->rx_nombuf = s.rx_nombuf;
	return 0;
}

/* DPDK's own IPv4 LPM, for comparison in the LPM benchmark: its config
 * struct is filled here, and its lookups are static inline. */
struct rte_lpm *nos_lpm_create(const char *name, int socket, uint32_t max_rules,
			       uint32_t number_tbl8s)
{
	struct rte_lpm_config c;
	memset(&c, 0, sizeof(c));
	c.max_rules = max_rules;
	c.number_tbl8s = number_tbl8s;
	return rte_lpm_create(name, socket, &c);
}

/* Looks up n addresses; a miss gives UINT32_MAX. */
void nos_lpm_lookup_bulk(const struct rte_lpm *lpm, const uint32_t *ips, uint32_t *out,
			 unsigned n)
{
	rte_lpm_lookup_bulk(lpm, ips, out, n);
	for (unsigned i = 0; i < n; i++)
		out[i] = (out[i] & RTE_LPM_LOOKUP_SUCCESS) ? (out[i] & 0x00ffffff) : UINT32_MAX;
}

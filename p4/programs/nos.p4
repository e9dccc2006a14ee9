/*
 * nos.p4: the forwarding pipeline the NOS control plane programs over
 * P4Runtime. P4-16 for the v1model architecture (bmv2 simple_switch_grpc).
 *
 * The pipeline follows the SAI routing pipeline, so the same forwarding model
 * (nos-core) maps onto P4 and SAI alike:
 *
 *   packet_out handling -> l3_admit -> ingress_rif -> ARP/ND punt
 *   -> acl_pre_ingress -> ipv4_lpm / ipv6_lpm -> wcmp_group (one-shot
 *   selector) -> nexthop -> neighbor -> router_interface -> acl_ingress
 *   -> TTL check -> (egress) packet_in header, or MAC/TTL/VLAN rewrite
 *   -> IPv4 checksum.
 *
 * Every table, action, key field and parameter carries a stable control-plane
 * name (@name with a leading dot: a global name, no control prefix) and the
 * tables, actions and the selector a fixed @id, so the P4Info p4c produces
 * matches p4/programs/nos.p4info.txtpb. The control plane resolves all of
 * them by name; p4/programs/README.md states what each one means.
 *
 * SPDX-License-Identifier: GPL-3.0-or-later
 */

#include <core.p4>
#include <v1model.p4>

/* ------------------------------------------------------------------------
 * Constants
 * ------------------------------------------------------------------------ */

/* The port bmv2 connects to the controller (simple_switch_grpc --cpu-port). */
const bit<9> CPU_PORT = 255;
/* Clone session the controller points at CPU_PORT, for ACL copies. */
const bit<32> COPY_TO_CPU_SESSION_ID = 255;
/* Index of the metadata field list preserved on clones (@field_list(1)). */
const bit<8> FL_PUNT = 1;

const bit<16> ETHERTYPE_IPV4 = 0x0800;
const bit<16> ETHERTYPE_ARP  = 0x0806;
const bit<16> ETHERTYPE_VLAN = 0x8100;
const bit<16> ETHERTYPE_IPV6 = 0x86dd;

const bit<8> IP_PROTO_ICMP   = 1;
const bit<8> IP_PROTO_TCP    = 6;
const bit<8> IP_PROTO_UDP    = 17;
const bit<8> IP_PROTO_ICMPV6 = 58;

/* ICMPv6 neighbor discovery: router solicitation (133) to redirect (137). */
const bit<8> ICMPV6_ND_FIRST = 133;
const bit<8> ICMPV6_ND_LAST  = 137;

/* Why a packet reached the controller (packet_in.punt_reason). */
const bit<8> PUNT_ARP                = 1;
const bit<8> PUNT_NEIGHBOR_DISCOVERY = 2;
const bit<8> PUNT_TO_ME              = 3;
const bit<8> PUNT_NEIGHBOR_MISS      = 4;
const bit<8> PUNT_TTL_EXPIRED        = 5;
const bit<8> PUNT_ACL_TRAP           = 6;
const bit<8> PUNT_ACL_COPY           = 7;

typedef bit<9>   port_t;
typedef bit<48>  mac_addr_t;
typedef bit<32>  ipv4_addr_t;
typedef bit<128> ipv6_addr_t;
typedef bit<12>  vlan_id_t;
typedef bit<32>  vrf_id_t;
typedef bit<32>  rif_id_t;
typedef bit<32>  nexthop_id_t;
typedef bit<32>  wcmp_group_id_t;

/* ------------------------------------------------------------------------
 * Headers
 * ------------------------------------------------------------------------ */

/* Put in front of every packet sent to the controller. */
@controller_header("packet_in")
header packet_in_header_t {
    port_t ingress_port;   /* the port the packet arrived on */
    bit<8> punt_reason;    /* one of the PUNT_* constants */
    bit<7> unused_pad;     /* always 0; keeps the header byte-aligned */
}

/* In front of every packet the controller sends. With submit_to_ingress = 0
 * the packet leaves by egress_port untouched; with 1 it runs through the
 * whole pipeline as if it had arrived on ingress_port. */
@controller_header("packet_out")
header packet_out_header_t {
    port_t egress_port;
    port_t ingress_port;
    bit<1> submit_to_ingress;
    bit<5> unused_pad;
}

header ethernet_t {
    mac_addr_t dst_addr;
    mac_addr_t src_addr;
    bit<16>    ether_type;
}

header vlan_t {
    bit<3>    pcp;
    bit<1>    dei;
    vlan_id_t vid;
    bit<16>   ether_type;
}

header arp_t {
    bit<16>     hw_type;
    bit<16>     proto_type;
    bit<8>      hw_len;
    bit<8>      proto_len;
    bit<16>     opcode;
    mac_addr_t  sender_mac;
    ipv4_addr_t sender_ip;
    mac_addr_t  target_mac;
    ipv4_addr_t target_ip;
}

header ipv4_t {
    bit<4>      version;
    bit<4>      ihl;
    bit<6>      dscp;
    bit<2>      ecn;
    bit<16>     total_len;
    bit<16>     identification;
    bit<3>      flags;
    bit<13>     frag_offset;
    bit<8>      ttl;
    bit<8>      protocol;
    bit<16>     hdr_checksum;
    ipv4_addr_t src_addr;
    ipv4_addr_t dst_addr;
}

header ipv6_t {
    bit<4>      version;
    bit<8>      traffic_class;
    bit<20>     flow_label;
    bit<16>     payload_length;
    bit<8>      next_header;
    bit<8>      hop_limit;
    ipv6_addr_t src_addr;
    ipv6_addr_t dst_addr;
}

header tcp_t {
    bit<16> src_port;
    bit<16> dst_port;
    bit<32> seq_no;
    bit<32> ack_no;
    bit<4>  data_offset;
    bit<4>  res;
    bit<8>  flags;
    bit<16> window;
    bit<16> checksum;
    bit<16> urgent_ptr;
}

header udp_t {
    bit<16> src_port;
    bit<16> dst_port;
    bit<16> length;
    bit<16> checksum;
}

/* The first four bytes of ICMP and ICMPv6 messages. */
header icmp_t {
    bit<8>  icmp_type;
    bit<8>  icmp_code;
    bit<16> checksum;
}

struct headers_t {
    packet_in_header_t  packet_in;
    packet_out_header_t packet_out;
    ethernet_t          ethernet;
    vlan_t              vlan;
    arp_t               arp;
    ipv4_t              ipv4;
    ipv6_t              ipv6;
    tcp_t               tcp;
    udp_t               udp;
    icmp_t              icmp;
    icmp_t              icmpv6;
}

/* Per-packet state. The two fields in field list 1 survive the clone made
 * for ACL copies, so the clone's packet_in header can be filled in. */
struct local_metadata_t {
    @field_list(1)
    port_t          ingress_port;   /* logical ingress port */
    @field_list(1)
    bit<8>          punt_reason;

    /* Packet fields, gathered once so tables never read invalid headers. */
    bit<16>         ether_type;     /* after the VLAN tag, if any */
    vlan_id_t       vlan_id;        /* 0 when untagged */
    bit<8>          ip_proto;
    bit<6>          dscp;
    bit<8>          ttl;            /* TTL or hop limit */
    bit<16>         l4_src_port;
    bit<16>         l4_dst_port;
    bit<8>          tcp_flags;
    ipv4_addr_t     src_ipv4;       /* 0 unless IPv4 */
    ipv4_addr_t     dst_ipv4;
    ipv6_addr_t     src_ipv6;       /* 0 unless IPv6 */
    ipv6_addr_t     dst_ipv6;
    bit<128>        hash_src;       /* flow hash input: source address */
    bit<128>        hash_dst;       /* flow hash input: destination address */

    /* Lookup results. */
    bool            admitted;
    rif_id_t        ingress_rif;
    vrf_id_t        vrf_id;
    bool            use_group;
    wcmp_group_id_t wcmp_group_id;
    bool            nexthop_valid;
    nexthop_id_t    nexthop_id;
    rif_id_t        egress_rif;
    bit<128>        neighbor_ip;
    bool            neighbor_miss;
    mac_addr_t      dst_mac;
    mac_addr_t      src_mac;
    port_t          egress_port;
    vlan_id_t       egress_vlan_id; /* 0: leave untagged */
    bool            member_override;
    port_t          member_port;
    bit<1>          member_tagged;

    /* The verdict. */
    bool            punted;
    bool            dropped;
    bool            copied;
    bool            routed;
}

/* ------------------------------------------------------------------------
 * Parser: Ethernet, one 802.1Q tag, ARP, IPv4, IPv6, TCP, UDP, ICMP(v6).
 * Packets from the controller start with the packet_out header.
 * ------------------------------------------------------------------------ */

parser nos_parser(packet_in packet,
                  out headers_t hdr,
                  inout local_metadata_t local_metadata,
                  inout standard_metadata_t standard_metadata) {
    state start {
        transition select(standard_metadata.ingress_port) {
            CPU_PORT: parse_packet_out;
            default: parse_ethernet;
        }
    }

    state parse_packet_out {
        packet.extract(hdr.packet_out);
        transition parse_ethernet;
    }

    state parse_ethernet {
        packet.extract(hdr.ethernet);
        transition select(hdr.ethernet.ether_type) {
            ETHERTYPE_VLAN: parse_vlan;
            ETHERTYPE_ARP: parse_arp;
            ETHERTYPE_IPV4: parse_ipv4;
            ETHERTYPE_IPV6: parse_ipv6;
            default: accept;
        }
    }

    state parse_vlan {
        packet.extract(hdr.vlan);
        transition select(hdr.vlan.ether_type) {
            ETHERTYPE_ARP: parse_arp;
            ETHERTYPE_IPV4: parse_ipv4;
            ETHERTYPE_IPV6: parse_ipv6;
            default: accept;
        }
    }

    state parse_arp {
        packet.extract(hdr.arp);
        transition accept;
    }

    /* L4 headers are parsed only for option-less first fragments. */
    state parse_ipv4 {
        packet.extract(hdr.ipv4);
        transition select(hdr.ipv4.ihl, hdr.ipv4.frag_offset, hdr.ipv4.protocol) {
            (4w5, 13w0, IP_PROTO_TCP): parse_tcp;
            (4w5, 13w0, IP_PROTO_UDP): parse_udp;
            (4w5, 13w0, IP_PROTO_ICMP): parse_icmp;
            default: accept;
        }
    }

    state parse_ipv6 {
        packet.extract(hdr.ipv6);
        transition select(hdr.ipv6.next_header) {
            IP_PROTO_TCP: parse_tcp;
            IP_PROTO_UDP: parse_udp;
            IP_PROTO_ICMPV6: parse_icmpv6;
            default: accept;
        }
    }

    state parse_tcp {
        packet.extract(hdr.tcp);
        transition accept;
    }

    state parse_udp {
        packet.extract(hdr.udp);
        transition accept;
    }

    state parse_icmp {
        packet.extract(hdr.icmp);
        transition accept;
    }

    state parse_icmpv6 {
        packet.extract(hdr.icmpv6);
        transition accept;
    }
}

/* ------------------------------------------------------------------------
 * Checksums: the IPv4 header checksum is verified on the way in and
 * recomputed on the way out (the TTL changes). Headers with options are
 * dropped in ingress, so the fixed 20-byte header is all there is.
 * ------------------------------------------------------------------------ */

control nos_verify_checksum(inout headers_t hdr,
                            inout local_metadata_t local_metadata) {
    apply {
        verify_checksum(hdr.ipv4.isValid() && hdr.ipv4.ihl == 5,
            { hdr.ipv4.version,
              hdr.ipv4.ihl,
              hdr.ipv4.dscp,
              hdr.ipv4.ecn,
              hdr.ipv4.total_len,
              hdr.ipv4.identification,
              hdr.ipv4.flags,
              hdr.ipv4.frag_offset,
              hdr.ipv4.ttl,
              hdr.ipv4.protocol,
              hdr.ipv4.src_addr,
              hdr.ipv4.dst_addr },
            hdr.ipv4.hdr_checksum,
            HashAlgorithm.csum16);
    }
}

control nos_compute_checksum(inout headers_t hdr,
                             inout local_metadata_t local_metadata) {
    apply {
        update_checksum(hdr.ipv4.isValid() && hdr.ipv4.ihl == 5,
            { hdr.ipv4.version,
              hdr.ipv4.ihl,
              hdr.ipv4.dscp,
              hdr.ipv4.ecn,
              hdr.ipv4.total_len,
              hdr.ipv4.identification,
              hdr.ipv4.flags,
              hdr.ipv4.frag_offset,
              hdr.ipv4.ttl,
              hdr.ipv4.protocol,
              hdr.ipv4.src_addr,
              hdr.ipv4.dst_addr },
            hdr.ipv4.hdr_checksum,
            HashAlgorithm.csum16);
    }
}

/* ------------------------------------------------------------------------
 * Ingress: every lookup. Actions only record results in local_metadata;
 * the verdict (punt, drop or forward) is taken once, at the end, and the
 * packet itself is rewritten in egress, only when it is routed.
 * ------------------------------------------------------------------------ */

control nos_ingress(inout headers_t hdr,
                    inout local_metadata_t local_metadata,
                    inout standard_metadata_t standard_metadata) {

    /* ---- actions ---- */

    /* l3_admit: the destination MAC is one of the router's. */
    @name(".admit_to_l3") @id(0x01000001)
    action admit_to_l3() {
        local_metadata.admitted = true;
    }

    /* ingress_rif: the (port, VLAN) belongs to router interface rif_id,
     * which routes in VRF vrf_id. */
    @name(".set_ingress_rif") @id(0x01000002)
    action set_ingress_rif(rif_id_t rif_id,
                           vrf_id_t vrf_id) {
        local_metadata.ingress_rif = rif_id;
        local_metadata.vrf_id = vrf_id;
    }

    /* acl_pre_ingress: route the packet in another VRF. */
    @name(".set_vrf") @id(0x01000003)
    action set_vrf(vrf_id_t vrf_id) {
        local_metadata.vrf_id = vrf_id;
    }

    /* ACLs: permit (stops lower-priority rules from matching). */
    @name(".acl_forward") @id(0x01000004)
    action acl_forward() {
    }

    /* ACLs: drop. */
    @name(".acl_drop") @id(0x01000005)
    action acl_drop() {
        local_metadata.dropped = true;
    }

    /* ACLs: send to the controller instead of forwarding. */
    @name(".acl_trap") @id(0x01000006)
    action acl_trap() {
        local_metadata.punted = true;
        local_metadata.punt_reason = PUNT_ACL_TRAP;
    }

    /* ACLs: forward, and send a copy to the controller. */
    @name(".acl_copy") @id(0x01000007)
    action acl_copy() {
        local_metadata.copied = true;
    }

    /* Routes and group members: use next hop nexthop_id. */
    @name(".set_nexthop_id") @id(0x01000008)
    action set_nexthop_id(nexthop_id_t nexthop_id) {
        local_metadata.nexthop_id = nexthop_id;
        local_metadata.nexthop_valid = true;
    }

    /* Routes: pick a next hop from weighted group wcmp_group_id. */
    @name(".set_wcmp_group_id") @id(0x01000009)
    action set_wcmp_group_id(wcmp_group_id_t wcmp_group_id) {
        local_metadata.wcmp_group_id = wcmp_group_id;
        local_metadata.use_group = true;
    }

    /* Routes (and table misses): drop. */
    @name(".drop") @id(0x0100000A)
    action drop_packet() {
        local_metadata.dropped = true;
    }

    /* Routes: the destination is the router itself; deliver to the
     * controller. */
    @name(".to_cpu") @id(0x0100000B)
    action to_cpu() {
        local_metadata.punted = true;
        local_metadata.punt_reason = PUNT_TO_ME;
    }

    /* nexthop: the next hop is neighbor_ip on router interface rif_id. */
    @name(".set_ip_nexthop") @id(0x0100000C)
    action set_ip_nexthop(rif_id_t rif_id,
                          bit<128> neighbor_ip) {
        local_metadata.egress_rif = rif_id;
        local_metadata.neighbor_ip = neighbor_ip;
    }

    /* neighbor: the neighbor's MAC; port and VLAN come from its router
     * interface. */
    @name(".set_dst_mac") @id(0x0100000D)
    action set_dst_mac(mac_addr_t dst_mac) {
        local_metadata.dst_mac = dst_mac;
    }

    /* neighbor on a VLAN interface: the neighbor's MAC and the member port
     * it sits behind; tagged = 1 sends with the interface's VLAN tag,
     * tagged = 0 untagged. */
    @name(".set_dst_mac_and_port") @id(0x0100000E)
    action set_dst_mac_and_port(mac_addr_t dst_mac,
                                port_t port,
                                bit<1> tagged) {
        local_metadata.dst_mac = dst_mac;
        local_metadata.member_override = true;
        local_metadata.member_port = port;
        local_metadata.member_tagged = tagged;
    }

    /* router_interface: leave by port, untagged, with source MAC src_mac. */
    @name(".set_port_and_src_mac") @id(0x0100000F)
    action set_port_and_src_mac(port_t port,
                                mac_addr_t src_mac) {
        local_metadata.egress_port = port;
        local_metadata.src_mac = src_mac;
        local_metadata.egress_vlan_id = 0;
    }

    /* router_interface: leave by port, tagged vlan_id, with source MAC
     * src_mac. */
    @name(".set_port_and_src_mac_and_vlan") @id(0x01000010)
    action set_port_and_src_mac_and_vlan(port_t port,
                                         mac_addr_t src_mac,
                                         vlan_id_t vlan_id) {
        local_metadata.egress_port = port;
        local_metadata.src_mac = src_mac;
        local_metadata.egress_vlan_id = vlan_id;
    }

    /* neighbor miss: the address is not resolved yet; the packet goes to the
     * controller, which resolves it and sends the packet again. */
    @name(".neighbor_miss") @id(0x01000011)
    action neighbor_miss() {
        local_metadata.neighbor_miss = true;
    }

    /* ---- the weighted group selector ---- */

    /* Groups are written one-shot (action_profile_action_set). Sizes count
     * member weights: at most 256 per group, 65536 in all. */
    @name(".wcmp_group_selector") @id(0x11000001)
    @max_group_size(256)
    @selector_size_semantics(sum_of_weights)
    action_selector(HashAlgorithm.crc16, 32w65536, 32w16) wcmp_group_selector;

    /* ---- tables ---- */

    /* Frames addressed to a router MAC are routed; others (except ARP and
     * ND) are dropped. */
    @name(".l3_admit") @id(0x02000001)
    table l3_admit {
        key = {
            hdr.ethernet.dst_addr : ternary @name("dst_mac");
            local_metadata.ingress_port : ternary @name("in_port");
        }
        actions = {
            admit_to_l3;
            @defaultonly NoAction;
        }
        const default_action = NoAction();
        size = 64;
    }

    /* (port, VLAN) -> router interface and VRF. A miss drops the packet. */
    @name(".ingress_rif") @id(0x02000002)
    table ingress_rif {
        key = {
            local_metadata.ingress_port : exact @name("in_port");
            local_metadata.vlan_id : exact @name("vlan_id");
        }
        actions = {
            set_ingress_rif;
            @defaultonly NoAction;
        }
        const default_action = NoAction();
        size = 1024;
    }

    /* ACL before routing: may choose the VRF, drop, trap or copy. */
    @name(".acl_pre_ingress") @id(0x02000003)
    table acl_pre_ingress {
        key = {
            local_metadata.ingress_port : ternary @name("in_port");
            hdr.ethernet.src_addr : ternary @name("src_mac");
            hdr.ethernet.dst_addr : ternary @name("dst_mac");
            local_metadata.ether_type : ternary @name("ether_type");
            local_metadata.vlan_id : ternary @name("vlan_id");
            local_metadata.src_ipv4 : ternary @name("src_ipv4");
            local_metadata.dst_ipv4 : ternary @name("dst_ipv4");
            local_metadata.src_ipv6 : ternary @name("src_ipv6");
            local_metadata.dst_ipv6 : ternary @name("dst_ipv6");
            local_metadata.ip_proto : ternary @name("ip_proto");
            local_metadata.l4_src_port : range @name("l4_src_port");
            local_metadata.l4_dst_port : range @name("l4_dst_port");
            local_metadata.tcp_flags : ternary @name("tcp_flags");
            local_metadata.dscp : ternary @name("dscp");
            local_metadata.ttl : ternary @name("ttl");
        }
        actions = {
            set_vrf;
            acl_forward;
            acl_drop;
            acl_trap;
            acl_copy;
            @defaultonly NoAction;
        }
        const default_action = NoAction();
        size = 256;
    }

    /* IPv4 routes per VRF. */
    @name(".ipv4_lpm") @id(0x02000004)
    table ipv4_lpm {
        key = {
            local_metadata.vrf_id : exact @name("vrf_id");
            hdr.ipv4.dst_addr : lpm @name("ipv4_dst");
        }
        actions = {
            set_nexthop_id;
            set_wcmp_group_id;
            drop_packet;
            to_cpu;
        }
        const default_action = drop_packet();
        size = 1048576;
    }

    /* IPv6 routes per VRF. */
    @name(".ipv6_lpm") @id(0x02000005)
    table ipv6_lpm {
        key = {
            local_metadata.vrf_id : exact @name("vrf_id");
            hdr.ipv6.dst_addr : lpm @name("ipv6_dst");
        }
        actions = {
            set_nexthop_id;
            set_wcmp_group_id;
            drop_packet;
            to_cpu;
        }
        const default_action = drop_packet();
        size = 131072;
    }

    /* Weighted groups: the selector hashes the flow's 5-tuple to pick one
     * member; every member is set_nexthop_id. */
    @name(".wcmp_group") @id(0x02000006)
    @oneshot
    table wcmp_group {
        key = {
            local_metadata.wcmp_group_id : exact @name("wcmp_group_id");
            local_metadata.hash_src : selector;
            local_metadata.hash_dst : selector;
            local_metadata.ip_proto : selector;
            local_metadata.l4_src_port : selector;
            local_metadata.l4_dst_port : selector;
        }
        actions = {
            set_nexthop_id;
            @defaultonly NoAction;
        }
        implementation = wcmp_group_selector;
        size = 16384;
    }

    /* Next hops: router interface and neighbor address. */
    @name(".nexthop") @id(0x02000007)
    table nexthop {
        key = {
            local_metadata.nexthop_id : exact @name("nexthop_id");
        }
        actions = {
            set_ip_nexthop;
            @defaultonly drop_packet;
        }
        const default_action = drop_packet();
        size = 65536;
    }

    /* Resolved neighbors: (router interface, address) -> MAC. IPv4
     * addresses are written IPv4-mapped (::ffff:a.b.c.d). */
    @name(".neighbor") @id(0x02000008)
    table neighbor {
        key = {
            local_metadata.egress_rif : exact @name("rif_id");
            local_metadata.neighbor_ip : exact @name("neighbor_ip");
        }
        actions = {
            set_dst_mac;
            set_dst_mac_and_port;
            @defaultonly neighbor_miss;
        }
        const default_action = neighbor_miss();
        size = 16384;
    }

    /* Router interfaces on the way out: port, source MAC and VLAN. */
    @name(".router_interface") @id(0x02000009)
    table router_interface {
        key = {
            local_metadata.egress_rif : exact @name("rif_id");
        }
        actions = {
            set_port_and_src_mac;
            set_port_and_src_mac_and_vlan;
            @defaultonly drop_packet;
        }
        const default_action = drop_packet();
        size = 1024;
    }

    /* ACL after routing: forward, drop, trap or copy. */
    @name(".acl_ingress") @id(0x0200000A)
    table acl_ingress {
        key = {
            local_metadata.ingress_port : ternary @name("in_port");
            hdr.ethernet.src_addr : ternary @name("src_mac");
            hdr.ethernet.dst_addr : ternary @name("dst_mac");
            local_metadata.ether_type : ternary @name("ether_type");
            local_metadata.vlan_id : ternary @name("vlan_id");
            local_metadata.src_ipv4 : ternary @name("src_ipv4");
            local_metadata.dst_ipv4 : ternary @name("dst_ipv4");
            local_metadata.src_ipv6 : ternary @name("src_ipv6");
            local_metadata.dst_ipv6 : ternary @name("dst_ipv6");
            local_metadata.ip_proto : ternary @name("ip_proto");
            local_metadata.l4_src_port : range @name("l4_src_port");
            local_metadata.l4_dst_port : range @name("l4_dst_port");
            local_metadata.tcp_flags : ternary @name("tcp_flags");
            local_metadata.dscp : ternary @name("dscp");
            local_metadata.ttl : ternary @name("ttl");
        }
        actions = {
            acl_forward;
            acl_drop;
            acl_trap;
            acl_copy;
            @defaultonly NoAction;
        }
        const default_action = NoAction();
        size = 512;
    }

    apply {
        /* Packets from the controller. */
        if (hdr.packet_out.isValid()) {
            if (hdr.packet_out.submit_to_ingress == 0) {
                standard_metadata.egress_spec = hdr.packet_out.egress_port;
                hdr.packet_out.setInvalid();
                exit;
            }
            local_metadata.ingress_port = hdr.packet_out.ingress_port;
            hdr.packet_out.setInvalid();
        } else {
            local_metadata.ingress_port = standard_metadata.ingress_port;
        }

        /* Truncated or malformed headers, and bad IPv4 checksums. */
        if (standard_metadata.parser_error != error.NoError ||
                standard_metadata.checksum_error == 1) {
            mark_to_drop(standard_metadata);
            exit;
        }

        /* Gather the fields the tables match on. */
        local_metadata.ether_type = hdr.ethernet.ether_type;
        local_metadata.vlan_id = 0;
        if (hdr.vlan.isValid()) {
            local_metadata.ether_type = hdr.vlan.ether_type;
            local_metadata.vlan_id = hdr.vlan.vid;
        }
        if (hdr.ipv4.isValid()) {
            local_metadata.ip_proto = hdr.ipv4.protocol;
            local_metadata.dscp = hdr.ipv4.dscp;
            local_metadata.ttl = hdr.ipv4.ttl;
            local_metadata.src_ipv4 = hdr.ipv4.src_addr;
            local_metadata.dst_ipv4 = hdr.ipv4.dst_addr;
            local_metadata.hash_src = (bit<128>)hdr.ipv4.src_addr;
            local_metadata.hash_dst = (bit<128>)hdr.ipv4.dst_addr;
        } else if (hdr.ipv6.isValid()) {
            local_metadata.ip_proto = hdr.ipv6.next_header;
            local_metadata.dscp = hdr.ipv6.traffic_class[7:2];
            local_metadata.ttl = hdr.ipv6.hop_limit;
            local_metadata.src_ipv6 = hdr.ipv6.src_addr;
            local_metadata.dst_ipv6 = hdr.ipv6.dst_addr;
            local_metadata.hash_src = hdr.ipv6.src_addr;
            local_metadata.hash_dst = hdr.ipv6.dst_addr;
        }
        if (hdr.tcp.isValid()) {
            local_metadata.l4_src_port = hdr.tcp.src_port;
            local_metadata.l4_dst_port = hdr.tcp.dst_port;
            local_metadata.tcp_flags = hdr.tcp.flags;
        } else if (hdr.udp.isValid()) {
            local_metadata.l4_src_port = hdr.udp.src_port;
            local_metadata.l4_dst_port = hdr.udp.dst_port;
        }

        /* L3 admit and the ingress router interface. */
        l3_admit.apply();
        if (!ingress_rif.apply().hit) {
            mark_to_drop(standard_metadata);
            exit;
        }

        /* ARP and neighbor discovery go to the controller whatever their
         * destination MAC; anything else must be IP addressed to us. */
        if (hdr.arp.isValid()) {
            local_metadata.punted = true;
            local_metadata.punt_reason = PUNT_ARP;
        } else if (hdr.icmpv6.isValid() &&
                   hdr.icmpv6.icmp_type >= ICMPV6_ND_FIRST &&
                   hdr.icmpv6.icmp_type <= ICMPV6_ND_LAST) {
            local_metadata.punted = true;
            local_metadata.punt_reason = PUNT_NEIGHBOR_DISCOVERY;
        } else if (!local_metadata.admitted) {
            local_metadata.dropped = true;
        } else if (hdr.ipv4.isValid()) {
            /* IPv4 options are not supported: such packets are dropped. */
            if (hdr.ipv4.version != 4 || hdr.ipv4.ihl != 5) {
                local_metadata.dropped = true;
            }
        } else if (hdr.ipv6.isValid()) {
            if (hdr.ipv6.version != 6) {
                local_metadata.dropped = true;
            }
        } else {
            local_metadata.dropped = true;
        }

        /* Pre-ingress ACL, then the route. */
        if (!local_metadata.punted && !local_metadata.dropped) {
            acl_pre_ingress.apply();
        }
        if (!local_metadata.punted && !local_metadata.dropped) {
            if (hdr.ipv4.isValid()) {
                ipv4_lpm.apply();
            } else {
                ipv6_lpm.apply();
            }
        }

        /* Group member selection, next hop, neighbor, egress interface. */
        if (!local_metadata.punted && !local_metadata.dropped) {
            if (local_metadata.use_group) {
                wcmp_group.apply();
            }
            if (!local_metadata.nexthop_valid) {
                local_metadata.dropped = true;
            }
        }
        if (!local_metadata.punted && !local_metadata.dropped) {
            nexthop.apply();
        }
        if (!local_metadata.punted && !local_metadata.dropped) {
            neighbor.apply();
            router_interface.apply();
        }

        /* Ingress ACL. */
        if (!local_metadata.punted && !local_metadata.dropped) {
            acl_ingress.apply();
        }

        /* TTL, then the neighbor: a packet that would expire is punted
         * (the controller answers with ICMP time exceeded) before an
         * unresolved neighbor is. */
        if (!local_metadata.punted && !local_metadata.dropped) {
            if (local_metadata.ttl <= 1) {
                local_metadata.punted = true;
                local_metadata.punt_reason = PUNT_TTL_EXPIRED;
            } else if (local_metadata.neighbor_miss) {
                local_metadata.punted = true;
                local_metadata.punt_reason = PUNT_NEIGHBOR_MISS;
            } else {
                local_metadata.routed = true;
            }
        }

        /* The verdict. */
        if (local_metadata.punted) {
            standard_metadata.egress_spec = CPU_PORT;
        } else if (local_metadata.routed) {
            standard_metadata.egress_spec = local_metadata.egress_port;
            if (local_metadata.member_override) {
                standard_metadata.egress_spec = local_metadata.member_port;
                if (local_metadata.member_tagged == 0) {
                    local_metadata.egress_vlan_id = 0;
                }
            }
            if (local_metadata.copied) {
                local_metadata.punt_reason = PUNT_ACL_COPY;
                clone_preserving_field_list(CloneType.I2E, COPY_TO_CPU_SESSION_ID, FL_PUNT);
            }
        } else {
            mark_to_drop(standard_metadata);
        }
    }
}

/* ------------------------------------------------------------------------
 * Egress: the packet_in header for packets to the controller (punts and
 * ACL copies), the rewrite for routed packets. Packets the controller sent
 * straight to a port pass unchanged.
 * ------------------------------------------------------------------------ */

control nos_egress(inout headers_t hdr,
                   inout local_metadata_t local_metadata,
                   inout standard_metadata_t standard_metadata) {
    apply {
        if (standard_metadata.egress_port == CPU_PORT) {
            hdr.packet_in.setValid();
            hdr.packet_in.ingress_port = local_metadata.ingress_port;
            hdr.packet_in.punt_reason = local_metadata.punt_reason;
            hdr.packet_in.unused_pad = 0;
        } else if (local_metadata.routed) {
            hdr.ethernet.dst_addr = local_metadata.dst_mac;
            hdr.ethernet.src_addr = local_metadata.src_mac;
            if (hdr.ipv4.isValid()) {
                hdr.ipv4.ttl = hdr.ipv4.ttl - 1;
            } else if (hdr.ipv6.isValid()) {
                hdr.ipv6.hop_limit = hdr.ipv6.hop_limit - 1;
            }
            /* Push, rewrite or pop the 802.1Q tag. */
            if (local_metadata.egress_vlan_id != 0) {
                if (!hdr.vlan.isValid()) {
                    hdr.vlan.setValid();
                    hdr.vlan.pcp = 0;
                    hdr.vlan.dei = 0;
                    hdr.vlan.ether_type = hdr.ethernet.ether_type;
                    hdr.ethernet.ether_type = ETHERTYPE_VLAN;
                }
                hdr.vlan.vid = local_metadata.egress_vlan_id;
            } else if (hdr.vlan.isValid()) {
                hdr.ethernet.ether_type = hdr.vlan.ether_type;
                hdr.vlan.setInvalid();
            }
        }
    }
}

control nos_deparser(packet_out packet, in headers_t hdr) {
    apply {
        packet.emit(hdr.packet_in);
        packet.emit(hdr.ethernet);
        packet.emit(hdr.vlan);
        packet.emit(hdr.arp);
        packet.emit(hdr.ipv4);
        packet.emit(hdr.ipv6);
        packet.emit(hdr.tcp);
        packet.emit(hdr.udp);
        packet.emit(hdr.icmp);
        packet.emit(hdr.icmpv6);
    }
}

V1Switch(nos_parser(),
         nos_verify_checksum(),
         nos_ingress(),
         nos_egress(),
         nos_compute_checksum(),
         nos_deparser()) main;

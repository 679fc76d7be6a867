#!/usr/bin/env bash
# An emulated internet path between network namespaces, for benchmarks (this kernel has no sch_netem).
#   client side: the root namespace, veth wan0 WAN_NET.1/24 (WAN_NET: default 198.18.0)
#   router namespace wan-rt: forwards both ways; NFQUEUE -> wan-delay (holds each packet DELAY, drops LOSS at
#     random, per wire-sized segment) -> tbf (RATE, a 1-BDP drop-tail buffer)
#   server namespace wan-srv: WAN_NET.130; start your registry there: `ip netns exec wan-srv docker-registry serve …`
# Packets are impaired where they are forwarded, not on the sender's own egress, so the sender's TCP sees real
# loss. Profiles: A = 40 ms RTT, 0.05 % loss each way, 400 Mbit/s; B = 100 ms RTT, 0.2 % loss, 200 Mbit/s; C = none.
# usage: wan.sh up | shape A|B|C | unshape | down        (root; needs gcc, iptables-legacy, tc; CC=cubic|bbr)
# Copied from the session tools (wan.sh) with the names made a prefix (WAN_PREFIX), so two benches can coexist.
# Only the addresses above, on veths this script creates, are used: nothing leaves the machine.
set -u
P=${WAN_PREFIX:-wan}  # names: namespaces $P-srv and $P-rt, veths ${P}0/${P}1 and ${P}r0/${P}r1 (<= 5 characters)
W=${WAN_DIR:-/tmp/$P}; mkdir -p $W
WAN_NET=${WAN_NET:-198.18.0}  # the /24 the two veth pairs use (198.18.0.0/15: the range set aside for benchmarks)
NS=$P-srv RT=$P-rt
CLI_IP=${WAN_NET}.1 REG_IP=${WAN_NET}.130
CC=${CC:-cubic}
command -v gcc >/dev/null || apt-get install -y -qq gcc >/dev/null
command -v iptables-legacy >/dev/null || apt-get install -y -qq iptables >/dev/null
profile_params() { # PROFILE -> "delay_us_each_way loss_ppm_each_way rate_mbit buffer_bytes"
  case $1 in
    A) echo "20000 500 400 2000000" ;;   # buffer = 1 BDP (400 Mbit/s x 40 ms)
    B) echo "50000 2000 200 2500000" ;;  # buffer = 1 BDP (200 Mbit/s x 100 ms)
    C) echo "0 0 0 0" ;;
    *) echo "unknown profile $1" >&2; return 1 ;;
  esac
}

build_delay() {
  [ -x $W/wan-delay ] && [ $W/wan-delay -nt "$0" ] && return 0
  cat > $W/wan-delay.c <<'EOF'
/* wan-delay: holds packets an iptables NFQUEUE rule hands it for a fixed delay, drops a random share, releases
 * the rest in order (batch verdicts). usage: wan-delay QNUM DELAY_US LOSS_PPM [QNUM DELAY_US LOSS_PPM]...
 * Metadata only (NFQNL_COPY_META); the kernel segments GSO packets before queueing, so loss is per segment.
 * SIGTERM/SIGINT: release what is held, print counters, exit. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nfnetlink.h>
#include <linux/netfilter/nfnetlink_queue.h>
#include <linux/netlink.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>
#define MAXQ 4
#define RING (1u << 20)
struct ent { uint32_t id; uint64_t due; };
struct q { int fd; uint16_t num; uint64_t delay_ns; uint32_t loss_ppm; struct ent *ring; uint32_t head, tail;
           uint64_t seen, dropped, accepted, maxlen, errors; };
static struct q qs[MAXQ]; static int nq;
static volatile sig_atomic_t stop;
static void on_sig(int s) { (void)s; stop = 1; }
static uint64_t now_ns(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return (uint64_t)t.tv_sec * 1000000000ull + t.tv_nsec; }
static uint64_t rs = 88172645463325252ull;
static uint64_t xrand(void) { rs ^= rs << 13; rs ^= rs >> 7; rs ^= rs << 17; return rs; }
static int put_attr(char *b, int off, uint16_t type, const void *d, uint16_t len) {
  struct nlattr *a = (struct nlattr *)(b + off); a->nla_type = type; a->nla_len = NLA_HDRLEN + len;
  memcpy(b + off + NLA_HDRLEN, d, len); return off + NLA_ALIGN(a->nla_len); }
static int msg_start(char *b, uint16_t type, uint16_t flags, uint16_t res) {
  memset(b, 0, NLMSG_HDRLEN + sizeof(struct nfgenmsg));
  struct nlmsghdr *h = (struct nlmsghdr *)b; h->nlmsg_type = (NFNL_SUBSYS_QUEUE << 8) | type; h->nlmsg_flags = NLM_F_REQUEST | flags;
  struct nfgenmsg *g = (struct nfgenmsg *)(b + NLMSG_HDRLEN); g->nfgen_family = AF_UNSPEC; g->version = NFNETLINK_V0; g->res_id = htons(res);
  return NLMSG_HDRLEN + NLMSG_ALIGN(sizeof(struct nfgenmsg)); }
static int msg_send(int fd, char *b, int len) {
  ((struct nlmsghdr *)b)->nlmsg_len = len; struct sockaddr_nl k = { .nl_family = AF_NETLINK };
  return sendto(fd, b, len, 0, (struct sockaddr *)&k, sizeof k); }
static int wait_ack(int fd) {
  char b[8192];
  for (;;) { int n = recv(fd, b, sizeof b, 0); if (n < 0) return -errno;
    for (struct nlmsghdr *h = (struct nlmsghdr *)b; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n))
      if (h->nlmsg_type == NLMSG_ERROR) return ((struct nlmsgerr *)NLMSG_DATA(h))->error; } }
static void verdict(struct q *q, uint32_t id, uint32_t v, int batch) {
  char b[128]; int off = msg_start(b, batch ? NFQNL_MSG_VERDICT_BATCH : NFQNL_MSG_VERDICT, 0, q->num);
  struct nfqnl_msg_verdict_hdr vh = { .verdict = htonl(v), .id = htonl(id) };
  off = put_attr(b, off, NFQA_VERDICT_HDR, &vh, sizeof vh);
  while (msg_send(q->fd, b, off) < 0 && errno == EINTR) {} }
static int open_queue(struct q *q) {
  int e = 0, sz = 64 << 20, one = 1; char b[256]; int off;
  if ((q->fd = socket(AF_NETLINK, SOCK_RAW, NETLINK_NETFILTER)) < 0) { perror("socket"); return -1; }
  setsockopt(q->fd, SOL_SOCKET, SO_RCVBUFFORCE, &sz, sizeof sz);
  setsockopt(q->fd, SOL_NETLINK, NETLINK_NO_ENOBUFS, &one, sizeof one);
  struct sockaddr_nl me = { .nl_family = AF_NETLINK };
  if (bind(q->fd, (struct sockaddr *)&me, sizeof me) < 0) { perror("bind"); return -1; }
  off = msg_start(b, NFQNL_MSG_CONFIG, NLM_F_ACK, q->num);
  struct nfqnl_msg_config_cmd cmd = { .command = NFQNL_CFG_CMD_BIND, .pf = htons(AF_INET) };
  off = put_attr(b, off, NFQA_CFG_CMD, &cmd, sizeof cmd);
  if (msg_send(q->fd, b, off) < 0 || (e = wait_ack(q->fd))) { fprintf(stderr, "bind queue %u: %s\n", q->num, strerror(e ? -e : errno)); return -1; }
  off = msg_start(b, NFQNL_MSG_CONFIG, NLM_F_ACK, q->num);
  struct nfqnl_msg_config_params p = { .copy_range = htonl(0), .copy_mode = NFQNL_COPY_META };
  off = put_attr(b, off, NFQA_CFG_PARAMS, &p, sizeof p);
  uint32_t ml = htonl(200000); off = put_attr(b, off, NFQA_CFG_QUEUE_MAXLEN, &ml, sizeof ml);
  if (msg_send(q->fd, b, off) < 0 || (e = wait_ack(q->fd))) { fprintf(stderr, "config queue %u: %s\n", q->num, strerror(e ? -e : errno)); return -1; }
  return (q->ring = calloc(RING, sizeof(struct ent))) ? 0 : -1; }
static void drain(struct q *q) { /* recvmmsg: up to 64 queued-packet messages per system call */
  enum { V = 64, SZ = 1024 };
  static char bufs[V][SZ]; static struct iovec iov[V]; static struct mmsghdr mm[V];
  for (;;) {
    for (int i = 0; i < V; i++) { iov[i] = (struct iovec){ bufs[i], SZ }; mm[i] = (struct mmsghdr){ .msg_hdr = { .msg_iov = &iov[i], .msg_iovlen = 1 } }; }
    int got = recvmmsg(q->fd, mm, V, MSG_DONTWAIT, NULL);
    if (got < 0) { if (errno == EINTR) continue; return; }
    uint64_t t = now_ns();
    for (int k = 0; k < got; k++) {
    int n = mm[k].msg_len; char *b = bufs[k];
    for (struct nlmsghdr *h = (struct nlmsghdr *)b; NLMSG_OK(h, n); h = NLMSG_NEXT(h, n)) {
      if (h->nlmsg_type == NLMSG_ERROR) { if (((struct nlmsgerr *)NLMSG_DATA(h))->error) q->errors++; continue; }
      if ((h->nlmsg_type >> 8) != NFNL_SUBSYS_QUEUE || (h->nlmsg_type & 0xff) != NFQNL_MSG_PACKET) continue;
      int alen = h->nlmsg_len - NLMSG_HDRLEN - NLMSG_ALIGN(sizeof(struct nfgenmsg));
      struct nlattr *a = (struct nlattr *)((char *)NLMSG_DATA(h) + NLMSG_ALIGN(sizeof(struct nfgenmsg)));
      for (; alen >= (int)NLA_HDRLEN && a->nla_len >= NLA_HDRLEN && a->nla_len <= alen;
           alen -= NLA_ALIGN(a->nla_len), a = (struct nlattr *)((char *)a + NLA_ALIGN(a->nla_len))) {
        if ((a->nla_type & NLA_TYPE_MASK) != NFQA_PACKET_HDR) continue;
        uint32_t id = ntohl(((struct nfqnl_msg_packet_hdr *)((char *)a + NLA_HDRLEN))->packet_id);
        q->seen++;
        if ((q->loss_ppm && xrand() % 1000000 < q->loss_ppm) || q->tail - q->head >= RING) { verdict(q, id, NF_DROP, 0); q->dropped++; break; }
        q->ring[q->tail % RING] = (struct ent){ id, t + q->delay_ns }; q->tail++;
        if (q->tail - q->head > q->maxlen) q->maxlen = q->tail - q->head;
        break;
      } } }
    if (got < V) return;
  } }
static void release(struct q *q, uint64_t t) {
  uint32_t last = 0; int any = 0;
  while (q->head != q->tail && q->ring[q->head % RING].due <= t) { last = q->ring[q->head % RING].id; q->head++; q->accepted++; any = 1; }
  if (any) verdict(q, last, NF_ACCEPT, 1); }
int main(int argc, char **argv) {
  if (argc < 4 || (argc - 1) % 3) { fprintf(stderr, "usage: %s QNUM DELAY_US LOSS_PPM [...]\n", argv[0]); return 2; }
  for (int i = 1; i + 2 < argc && nq < MAXQ; i += 3, nq++) {
    qs[nq].num = atoi(argv[i]); qs[nq].delay_ns = strtoull(argv[i + 1], 0, 10) * 1000ull; qs[nq].loss_ppm = atoi(argv[i + 2]);
    if (open_queue(&qs[nq])) return 1; }
  rs ^= (uint64_t)getpid() * 0x9E3779B97F4A7C15ull ^ now_ns();
  signal(SIGTERM, on_sig); signal(SIGINT, on_sig); signal(SIGUSR1, on_sig);
  fprintf(stderr, "wan-delay: %d queue(s) ready\n", nq);
  struct pollfd pf[MAXQ];
  for (int i = 0; i < nq; i++) pf[i] = (struct pollfd){ .fd = qs[i].fd, .events = POLLIN };
  while (!stop) {
    uint64_t t = now_ns(), next = UINT64_MAX;
    for (int i = 0; i < nq; i++) { release(&qs[i], t);
      if (qs[i].head != qs[i].tail && qs[i].ring[qs[i].head % RING].due < next) next = qs[i].ring[qs[i].head % RING].due; }
    struct timespec to = { 1, 0 };
    if (next != UINT64_MAX) { t = now_ns(); uint64_t d = next > t ? next - t : 0; to.tv_sec = d / 1000000000ull; to.tv_nsec = d % 1000000000ull; }
    if (ppoll(pf, nq, &to, NULL) > 0) for (int i = 0; i < nq; i++) if (pf[i].revents & POLLIN) drain(&qs[i]);
  }
  for (int i = 0; i < nq; i++) {
    if (qs[i].head != qs[i].tail) verdict(&qs[i], qs[i].ring[(qs[i].tail - 1) % RING].id, NF_ACCEPT, 1);
    printf("queue %u: seen %llu dropped %llu accepted %llu max_held %llu verdict_errors %llu\n", qs[i].num,
           (unsigned long long)qs[i].seen, (unsigned long long)qs[i].dropped, (unsigned long long)qs[i].accepted,
           (unsigned long long)qs[i].maxlen, (unsigned long long)qs[i].errors); }
  fflush(stdout); return 0; }
EOF
  gcc -O2 -Wall -o $W/wan-delay $W/wan-delay.c
}

net_down() {
  unshape 2>/dev/null
  ip netns del $RT 2>/dev/null; ip netns del $NS 2>/dev/null   # takes the veths, tc and iptables rules with it
  ip link del ${P}0 2>/dev/null
  return 0
}
net_up() {
  net_down
  ip netns add $RT && ip netns add $NS || return 1
  ip link add ${P}0 type veth peer name ${P}1 netns $RT || return 1
  ip -n $RT link add ${P}r0 type veth peer name ${P}r1 netns $NS || return 1
  ip addr add $CLI_IP/24 dev ${P}0 && ip link set ${P}0 up || return 1
  ip -n $RT addr add ${WAN_NET}.2/25 dev ${P}1; ip -n $RT addr add ${WAN_NET}.129/25 dev ${P}r0
  ip -n $RT link set lo up; ip -n $RT link set ${P}1 up; ip -n $RT link set ${P}r0 up
  ip netns exec $RT sysctl -qw net.ipv4.ip_forward=1 net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.${P}1.proxy_arp=1
  ip -n $NS addr add $REG_IP/25 dev ${P}r1; ip -n $NS link set lo up; ip -n $NS link set ${P}r1 up
  # the sender (registry) side: the chosen congestion control on its route (a namespace may only make the
  # allowed ones its default), buffers big enough for 1 BDP + the bottleneck buffer, no per-destination
  # metrics (ssthresh) carried from one run into the next
  ip -n $NS route add default via ${WAN_NET}.129 congctl $CC || return 1
  # veth hands packets to the per-CPU backlog of whichever CPU sent them: consecutive packets of one flow
  # could be taken up by two CPUs and arrive out of order. RPS steers each flow to one CPU: in order, as on a wire.
  echo 3 > /sys/class/net/${P}0/queues/rx-0/rps_cpus || return 1
  ip netns exec $RT sh -c "echo 3 > /sys/class/net/${P}1/queues/rx-0/rps_cpus; echo 3 > /sys/class/net/${P}r0/queues/rx-0/rps_cpus" || return 1
  ip netns exec $NS sh -c "echo 3 > /sys/class/net/${P}r1/queues/rx-0/rps_cpus" || return 1
  ip netns exec $NS sysctl -qw net.ipv4.tcp_no_metrics_save=1 \
    "net.ipv4.tcp_wmem=4096 16384 16777216" "net.ipv4.tcp_rmem=4096 131072 16777216" || return 1
}
unshape() {
  ip netns exec $RT iptables-legacy -F FORWARD 2>/dev/null
  [ -f $W/delay.pid ] && { kill $(cat $W/delay.pid) 2>/dev/null; sleep 0.3; rm -f $W/delay.pid; }
  tc -n $RT qdisc del dev ${P}1 root 2>/dev/null; tc -n $RT qdisc del dev ${P}r0 root 2>/dev/null
  return 0
}
shape() { # PROFILE
  unshape
  local p; p=($(profile_params $1)) || return 1
  PROFILE=$1 RATE_MBIT=${p[2]}
  [ "$1" = C ] && return 0
  build_delay || return 1
  ip netns exec $RT setsid chrt -f 10 $W/wan-delay 0 ${p[0]} ${p[1]} 1 ${p[0]} ${p[1]} > $W/delay.$1.log 2>&1 < /dev/null &
  echo $! > $W/delay.pid; sleep 0.5
  kill -0 $(cat $W/delay.pid) 2>/dev/null || { cat $W/delay.$1.log; return 1; }
  ip netns exec $RT iptables-legacy -A FORWARD -i ${P}1 -j NFQUEUE --queue-num 0 || return 1   # client -> registry
  ip netns exec $RT iptables-legacy -A FORWARD -i ${P}r0 -j NFQUEUE --queue-num 1 || return 1   # registry -> client
  local dev
  for dev in ${P}1 ${P}r0; do
    tc -n $RT qdisc add dev $dev root tbf rate ${p[2]}mbit burst 64kb limit ${p[3]} || return 1
  done
}


case ${1:-} in
  up) net_up ;;
  shape) shape "${2:?profile A, B or C}" ;;
  unshape) unshape ;;
  down) net_down ;;
  *) echo "usage: $0 up | shape A|B|C | unshape | down" >&2; exit 2 ;;
esac

#!/usr/bin/env python3
# Link emulator of the netns test bed, in place of `tc netem` (this project's CI kernel has no netem
# qdisc). It runs in a namespace of its own and owns one TUN device per host: each TUN is created
# here, then moved into its host's namespace (the open fd stays attached), given the host's address
# (10.80.0.x/24, so every other host is routed through it) and brought up. IP packets read from a
# host's TUN are forwarded to the TUN of the host owning the destination address, after the sender's
# link shaped them, on the sender's egress the way netem on its interface would:
#   rate    serialization delay through a FIFO (a token bucket of one packet), tail drop past `limit`
#           packets queued (netem's default limit is 1000);
#   delay   fixed one-way delay (ms), plus a uniform jitter in [-jitter, +jitter] ms; a packet never
#           overtakes the one before it on its link (order is kept, as netem does with rate set);
#   loss    each packet dropped with this probability: TCP sees real loss and retransmits;
#   down    every packet to or from the host dropped, until `up`.
# Commands, one per line on stdin (answered "ok ..." or "err ..." on stdout):
#   set IP [delay=MS] [jitter=MS] [loss=P] [rate=50mbit|0] [limit=N]     down IP     up IP
#   stats on|off (one "stats {json}" line per second: per link, packets forwarded/lost/dropped)
#   stats (one line now)    quit
# Usage: link-emulator.py [--seed N] [--default delay=MS,...] --host IP NETNS [--host IP NETNS ...]
# Prints "ready" once every TUN is in place. Stdlib only (Python >= 3.8).
import fcntl, heapq, json, os, random, select, struct, subprocess, sys, time

TUNSETIFF = 0x400454ca
IFF_TUN, IFF_NO_PI = 0x0001, 0x1000


class Link:
    def __init__(self, ip, ns):
        self.ip, self.ns = ip, ns
        self.delay = 0.0; self.jitter = 0.0; self.loss = 0.0; self.rate = 0.0; self.limit = 1000
        self.up = True
        self.free_at = 0.0      # when the link's serializer is free again
        self.last_out = 0.0     # delivery time of the last packet (order is kept)
        self.queued = 0
        self.fwd = self.lost = self.dropped = self.down_drops = 0
        self.bytes = 0

    def configure(self, kv):
        for k, v in kv.items():
            if k == 'delay': self.delay = float(v) / 1000
            elif k == 'jitter': self.jitter = float(v) / 1000
            elif k == 'loss': self.loss = float(v)
            elif k == 'limit': self.limit = int(v)
            elif k == 'rate': self.rate = parse_rate(v)
            else: raise ValueError('unknown parameter ' + k)

    def counters(self):
        return {'fwd': self.fwd, 'lost': self.lost, 'dropped': self.dropped, 'down': self.down_drops,
                'bytes': self.bytes, 'queued': self.queued, 'up': self.up}


def parse_rate(v):
    v = v.lower()
    for suffix, mul in (('gbit', 1e9), ('mbit', 1e6), ('kbit', 1e3), ('bit', 1)):
        if v.endswith(suffix): return float(v[:-len(suffix)]) * mul
    return float(v)


def parse_kv(words):
    out = {}
    for w in words:
        k, _, v = w.partition('=')
        if v == '': raise ValueError('expected key=value, got ' + w)
        out[k] = v
    return out


def sh(*args):
    subprocess.run(args, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def open_tun(name):
    fd = os.open('/dev/net/tun', os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack('16sH', name.encode(), IFF_TUN | IFF_NO_PI))
    os.set_blocking(fd, False)
    return fd


def say(line):
    sys.stdout.write(line + '\n'); sys.stdout.flush()


def main(argv):
    hosts, default, seed = [], {}, None
    i = 0
    while i < len(argv):
        a = argv[i]
        if a == '--host': hosts.append((argv[i + 1], argv[i + 2])); i += 3
        elif a == '--default': default = parse_kv(argv[i + 1].split(',')) if argv[i + 1] else {}; i += 2
        elif a == '--seed': seed = int(argv[i + 1]); i += 2
        else: raise SystemExit('unknown argument ' + a)
    rng = random.Random(seed)
    links, by_fd, by_ip = [], {}, {}
    for k, (ip, ns) in enumerate(hosts):
        name = 'lswt%d' % k
        fd = open_tun(name)
        sh('ip', 'link', 'set', name, 'netns', ns)  # the fd stays attached to the moved netdev
        sh('ip', '-n', ns, 'addr', 'add', ip + '/24', 'dev', name)
        sh('ip', '-n', ns, 'link', 'set', name, 'up')
        link = Link(ip, ns)
        link.configure(default)
        link.fd = fd
        links.append(link); by_fd[fd] = link; by_ip[socket_ip(ip)] = link
    say('ready')

    heap = []        # (deliver_at, seq, link_from, link_to, packet)
    seq = 0
    stats_on = False
    next_stats = time.monotonic() + 1
    stdin = sys.stdin.fileno()
    os.set_blocking(stdin, False)
    buf = b''
    fds = [l.fd for l in links] + [stdin]
    while True:
        now = time.monotonic()
        timeout = 1.0
        if heap: timeout = max(0.0, min(timeout, heap[0][0] - now))
        if stats_on: timeout = max(0.0, min(timeout, next_stats - now))
        readable, _, _ = select.select(fds, [], [], timeout)
        now = time.monotonic()
        for fd in readable:
            if fd == stdin:
                chunk = os.read(stdin, 65536)
                if chunk == b'': return 0  # the test bed went away
                buf += chunk
                while b'\n' in buf:
                    line, buf = buf.split(b'\n', 1)
                    r = command(line.decode().split(), by_ip, links)
                    if r == 'quit': return 0
                    if r == 'stats on': stats_on = True; next_stats = now + 1
                    elif r == 'stats off': stats_on = False
                    elif r == 'stats': say('stats ' + stats_json(links))
                    else: say(r)
                continue
            src = by_fd[fd]
            for _ in range(64):  # drain a burst, then look at the timers again
                try: pkt = os.read(fd, 65535)
                except BlockingIOError: break
                if len(pkt) < 20 or pkt[0] >> 4 != 4: continue  # IPv4 only (no IPv6 on the bed)
                dst = by_ip.get(pkt[16:20])
                if dst is None: continue
                if not src.up or not dst.up: src.down_drops += 1; continue
                if src.loss > 0 and rng.random() < src.loss: src.lost += 1; continue
                if src.queued >= src.limit: src.dropped += 1; continue
                start = max(now, src.free_at)
                src.free_at = start + (len(pkt) * 8 / src.rate if src.rate > 0 else 0)
                at = src.free_at + src.delay + (rng.uniform(-src.jitter, src.jitter) if src.jitter > 0 else 0)
                at = max(at, src.last_out)
                src.last_out = at
                src.queued += 1
                seq += 1
                heapq.heappush(heap, (at, seq, src, dst, pkt))
        while heap and heap[0][0] <= now:
            _, _, src, dst, pkt = heapq.heappop(heap)
            src.queued -= 1
            if not dst.up or not src.up: src.down_drops += 1; continue
            try:
                os.write(dst.fd, pkt)
                src.fwd += 1; src.bytes += len(pkt)
            except OSError:
                src.dropped += 1
        if stats_on and now >= next_stats:
            next_stats = now + 1
            say('stats ' + stats_json(links))


def socket_ip(ip):
    return bytes(int(p) for p in ip.split('.'))


def stats_json(links):
    return json.dumps({'t': round(time.time(), 3), 'links': {l.ip: l.counters() for l in links}}, separators=(',', ':'))


def command(words, by_ip, links):
    if not words: return 'err empty command'
    op = words[0]
    try:
        if op in ('quit', 'stats') and len(words) <= 2: return ' '.join(words)
        link = by_ip.get(socket_ip(words[1])) if len(words) > 1 else None
        if link is None: return 'err no such host: ' + ' '.join(words[1:2])
        if op == 'down': link.up = False
        elif op == 'up': link.up = True
        elif op == 'set': link.configure(parse_kv(words[2:]))
        else: return 'err unknown command ' + op
        return 'ok ' + ' '.join(words)
    except (ValueError, IndexError) as e:
        return 'err ' + str(e)


if __name__ == '__main__':
    try:
        sys.exit(main(sys.argv[1:]))
    except subprocess.CalledProcessError as e:
        say('err ' + ' '.join(e.cmd) + ': ' + e.stderr.decode().strip())
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(0)

// Two homes behind NAT and an "internet", built from network namespaces with `ip` and `iptables`:
//
//   inet (bridge br0, 7.77.0.0/24; the relay 7.77.0.1 and a STUN server 7.77.0.5 run here)
//    |-- pub: 7.77.0.4 (a public node: a host of its own, so its connections come from its address)
//    |-- natA: public leg 7.77.0.2 -- MASQUERADE -- private leg 10.78.1.1 -- homeA: 10.78.1.2
//    `-- natB: public leg 7.77.0.3 -- MASQUERADE -- private leg 10.78.2.1 -- homeB: 10.78.2.2
//
// 7.77.0.0/24 exists only inside these namespaces (none has a route out); it is a public-looking range
// on purpose: AutoNAT and DCUtR ignore private addresses, so an "internet" on 10.x would test nothing.
// A home reaches the internet through its router; nothing reaches a home (the routers have no route
// to the other home's 10.78.x network and MASQUERADE maps only replies), so the homes meet only through
// the relay, and then, by WebRTC, directly: ICE learns each home's public address:port from the STUN
// server (coturn, `turnserver --stun-only`) and both send UDP to the other's mapping at once; Linux
// MASQUERADE keeps the source port and lets the replies in. A home created `symmetric` has a router
// that maps every new flow to a random port (MASQUERADE --random-fully, a symmetric NAT): the port
// STUN saw is not the one its packets to the other home leave from, so no hole can be punched and
// the homes stay on the relay. Each router counts the bytes its home
// exchanges with the relay, with the other home's public address (the hole-punched path) and with the
// public node.
import { execFileSync, type ChildProcess } from 'node:child_process'
import { Netns } from '../netns-helpers.ts'

export const RELAY_IP = '7.77.0.1'
export const PUBLIC_IP = '7.77.0.4'
/** The STUN server's address (on the internet's bridge; not the relay's, so the routers' relay counters leave it out). */
export const STUN_IP = '7.77.0.5'
export const STUN_URL = `stun:${STUN_IP}:3478`

export interface Home {
  readonly router: Netns
  readonly host: Netns
  /** The router's public address: what the internet sees the home's connections come from. */
  readonly publicIp: string
  /** The home host's own (private) address. */
  readonly ip: string
}

/** Bytes a home exchanged (both directions) through its router, by the other end. */
export interface HomeTraffic {
  readonly relay: number
  readonly otherHome: number
  readonly publicNode: number
}

function run (ns: Netns, ...args: string[]): string {
  return execFileSync('ip', ['netns', 'exec', ns.name, ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
}

function ipIn (ns: Netns, ...args: string[]): void {
  execFileSync('ip', ['-n', ns.name, ...args], { stdio: ['ignore', 'ignore', 'pipe'] })
}

/** Why the NAT topology cannot be built here (iptables missing), or undefined. */
export function natUnavailable (): string | undefined {
  try {
    execFileSync('iptables', ['--version'], { stdio: 'ignore' })
  } catch {
    return 'iptables is not installed (apt-get install iptables)'
  }
  try {
    execFileSync('turnserver', ['--help'], { stdio: 'ignore' })
  } catch (err: any) {
    if (err?.code === 'ENOENT') return 'coturn\'s turnserver (the STUN server) is not installed (apt-get install coturn)'
  }
  return undefined
}

export class NatTopology {
  private constructor (readonly inet: Netns, readonly pub: Netns, readonly homes: readonly [Home, Home]) {}

  /** `symmetric`: which homes' routers are symmetric NATs (default neither). */
  static create (tag: string, symmetric: readonly [boolean, boolean] = [false, false]): NatTopology {
    const made: Netns[] = []
    const make = (t: string): Netns => { const n = Netns.create(t); made.push(n); return n }
    try {
      const inet = make(`${tag}i`)
      ipIn(inet, 'link', 'add', 'br0', 'type', 'bridge')
      ipIn(inet, 'addr', 'add', `${RELAY_IP}/24`, 'dev', 'br0')
      ipIn(inet, 'addr', 'add', `${STUN_IP}/24`, 'dev', 'br0')
      ipIn(inet, 'link', 'set', 'br0', 'up')
      // the public node on a host of its own: on the relay's host, its connections to the relay would
      // leave from the relay's address, and AutoNAT could never confirm the public node's
      const pub = make(`${tag}p`)
      ipIn(pub, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'up0', 'netns', inet.name)
      ipIn(inet, 'link', 'set', 'up0', 'master', 'br0')
      ipIn(inet, 'link', 'set', 'up0', 'up')
      ipIn(pub, 'addr', 'add', `${PUBLIC_IP}/24`, 'dev', 'eth0')
      ipIn(pub, 'link', 'set', 'eth0', 'up')
      const home = (i: 1 | 2, publicIp: string): Home => {
        const router = make(`${tag}r${i}`)
        const host = make(`${tag}h${i}`)
        const lan = `10.78.${i}`
        // public leg: router `pub` <-> inet `up<i>` on the bridge
        ipIn(router, 'link', 'add', 'pub', 'type', 'veth', 'peer', 'name', `up${i}`, 'netns', inet.name)
        ipIn(inet, 'link', 'set', `up${i}`, 'master', 'br0')
        ipIn(inet, 'link', 'set', `up${i}`, 'up')
        ipIn(router, 'addr', 'add', `${publicIp}/24`, 'dev', 'pub')
        ipIn(router, 'link', 'set', 'pub', 'up')
        // private leg: router `lan` <-> host `eth0`
        ipIn(router, 'link', 'add', 'lan', 'type', 'veth', 'peer', 'name', 'eth0', 'netns', host.name)
        ipIn(router, 'addr', 'add', `${lan}.1/24`, 'dev', 'lan')
        ipIn(router, 'link', 'set', 'lan', 'up')
        ipIn(host, 'addr', 'add', `${lan}.2/24`, 'dev', 'eth0')
        ipIn(host, 'link', 'set', 'eth0', 'up')
        ipIn(host, 'route', 'add', 'default', 'via', `${lan}.1`)
        run(router, 'sysctl', '-qw', 'net.ipv4.ip_forward=1')
        run(router, 'iptables', '-t', 'nat', '-A', 'POSTROUTING', '-o', 'pub', '-j', 'MASQUERADE', ...(symmetric[i - 1] ? ['--random-fully'] : []))
        // a home router's firewall: unsolicited packets to the router itself are dropped. Without it, the
        // first hole-punching packet from the other home (arriving before ours left) was answered with a
        // port-unreachable and left a conntrack entry for that address pair, so our own packet to that
        // peer then left from another port and ICE through the two NATs never completed (a dropped
        // packet's conntrack entry is never confirmed)
        run(router, 'iptables', '-A', 'INPUT', '-i', 'pub', '-m', 'conntrack', '--ctstate', 'NEW', '-j', 'DROP')
        // byte counters (no target: count only), in the order traffic() reads them
        for (const peer of [RELAY_IP, i === 1 ? '7.77.0.3' : '7.77.0.2', PUBLIC_IP]) {
          run(router, 'iptables', '-A', 'FORWARD', '-i', 'lan', '-d', peer)
          run(router, 'iptables', '-A', 'FORWARD', '-o', 'lan', '-s', peer)
        }
        return { router, host, publicIp, ip: `${lan}.2` }
      }
      return new NatTopology(inet, pub, [home(1, '7.77.0.2'), home(2, '7.77.0.3')])
    } catch (err) {
      for (const n of made) n.destroy()
      throw err
    }
  }

  /** Starts the STUN server (killed by destroy()); resolves once it listens. */
  async startStun (signal: AbortSignal): Promise<ChildProcess> {
    const child = this.inet.spawn('turnserver', ['-n', '--stun-only', '-L', STUN_IP, '-p', '3478', '--no-cli', '--no-tls', '--no-dtls', '--log-file', 'stdout', '--simple-log'], { stdio: 'ignore' })
    while (!run(this.inet, 'ss', '-uln').includes(`${STUN_IP}:3478`)) {
      if (child.exitCode != null) throw new Error(`turnserver exited with ${child.exitCode}`)
      signal.throwIfAborted()
      await new Promise(resolve => setTimeout(resolve, 100))
    }
    return child
  }

  /** Bytes home `i` (0 or 1) exchanged through its router, by the other end. */
  traffic (i: 0 | 1): HomeTraffic {
    const out = run(this.homes[i].router, 'iptables', '-nvxL', 'FORWARD')
    // rule lines start with "pkts bytes"; ours carry no target, so they are the first six
    const bytes = out.split('\n').slice(2).filter(l => /^\s*\d+\s+\d+/.test(l)).map(l => Number(l.trim().split(/\s+/)[1]))
    const pair = (k: number): number => (bytes[2 * k] ?? 0) + (bytes[2 * k + 1] ?? 0)
    return { relay: pair(0), otherHome: pair(1), publicNode: pair(2) }
  }

  /** Kills everything in the namespaces and deletes them. Idempotent. */
  destroy (): void {
    for (const h of this.homes) { h.host.destroy(); h.router.destroy() }
    this.pub.destroy()
    this.inet.destroy()
  }
}

// Runs `node $LSW_NETNS_BIN ...argv` inside the network namespace $LSW_NETNS: the swarm launcher
// (core/demo/swarm-launcher.ts) spawns `node <bin> start ...` and owns the process group, so this
// stand-in bin lets it start nodes on the test bed's hosts unchanged. `ip netns exec` execs the node
// in place, so both stay in the launcher's process group and its SIGTERM / SIGKILL reach the node;
// this process only waits and passes on the node's exit status.
import { spawn } from 'node:child_process'

const ns = process.env.LSW_NETNS
const bin = process.env.LSW_NETNS_BIN
if (ns == null || bin == null) {
  process.stderr.write('in-netns.mjs: LSW_NETNS and LSW_NETNS_BIN must be set\n')
  process.exit(2)
}
const child = spawn('ip', ['netns', 'exec', ns, process.execPath, bin, ...process.argv.slice(2)], { stdio: 'inherit' })
// the group's SIGTERM reaches the node itself; stay until it has shut down
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, () => {})
child.on('exit', (code, signal) => { process.exit(code ?? (signal != null ? 128 : 1)) })
child.on('error', err => { process.stderr.write(`in-netns.mjs: ${err.message}\n`); process.exit(2) })

// Fused softmax + cross-entropy forward, one thread per row of logits [N,V]. Targets < 0 are
// ignored (loss 0); the backward is elementwise (elementwise.ts).
import { LINEAR, WG1, ro, rw } from './kernel.ts'
import type { KernelDef } from './kernel.ts'

/** probs[n,:] = softmax(logits[n,:]); losses[n] = -log_softmax(logits[n,:])[target[n]] (0 if target < 0). */
export const crossEntropyForward: KernelDef = {
  key: 'ce_fwd',
  params: [['N', 'u32'], ['V', 'u32']],
  bindings: [rw('losses'), rw('probs'), ro('logits'), ro('targets', 'i32')],
  workgroup: [WG1, 1],
  body: `${LINEAR} if (i >= p.N) { return; }
  let base = i * p.V;
  var mx = logits[base];
  for (var v = 1u; v < p.V; v++) { let x = logits[base + v]; if (x > mx) { mx = x; } }
  var s = 0.0;
  for (var v = 0u; v < p.V; v++) { s += exp(logits[base + v] - mx); }
  let inv = 1.0 / s;
  for (var v = 0u; v < p.V; v++) { probs[base + v] = exp(logits[base + v] - mx) * inv; }
  let t = targets[i];
  if (t < 0) { losses[i] = 0.0; } else { losses[i] = -(logits[base + u32(t)] - mx - log(s)); }`
}

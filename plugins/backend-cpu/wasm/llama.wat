;; WASM SIMD128 kernels of the Llama layers on the CPU backend: SwiGLU forward and backward, the
;; hottest of them (an exp per element, which scalar TypeScript pays for through Math.exp).
;; Assembled at load time by llama-wasm.ts (the `wabt` npm package); imports the backend's shared
;; memory like kernels.wat. Pointers in BYTES; n a multiple of 4 (the caller does the tail).
;; Checked against the float64 references by the compliance suite (core/testing/compliance-llama.ts).
(module
  (import "env" "memory" (memory 1 65536 shared))

  ;; exp(x) on 4 lanes, float32-accurate (Cephes expf: x = k ln2 + r, |r| <= ln2/2, degree-6
  ;; polynomial, 2^k built in the exponent bits). x clamped to [-87.3, 88.3], where 2^k stays normal.
  (func $exp4 (param $x v128) (result v128)
    (local $k v128) (local $r v128) (local $p v128)
    (local.set $x (f32x4.min (f32x4.max (local.get $x) (f32x4.splat (f32.const -87.3))) (f32x4.splat (f32.const 88.3))))
    (local.set $k (f32x4.nearest (f32x4.mul (local.get $x) (f32x4.splat (f32.const 1.44269504088896341)))))
    (local.set $r (f32x4.sub
      (f32x4.sub (local.get $x) (f32x4.mul (local.get $k) (f32x4.splat (f32.const 0.693359375))))
      (f32x4.mul (local.get $k) (f32x4.splat (f32.const -2.12194440e-4)))))
    (local.set $p (f32x4.splat (f32.const 1.9875691500e-4)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (f32x4.splat (f32.const 1.3981999507e-3))))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (f32x4.splat (f32.const 8.3334519073e-3))))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (f32x4.splat (f32.const 4.1665795894e-2))))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (f32x4.splat (f32.const 1.6666665459e-1))))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $r)) (f32x4.splat (f32.const 5.0000001201e-1))))
    (local.set $p (f32x4.add
      (f32x4.add (f32x4.mul (f32x4.mul (local.get $p) (local.get $r)) (local.get $r)) (local.get $r))
      (f32x4.splat (f32.const 1))))
    (f32x4.mul (local.get $p)
      (i32x4.shl (i32x4.add (i32x4.trunc_sat_f32x4_s (local.get $k)) (i32x4.splat (i32.const 127))) (i32.const 23))))

  ;; sigmoid(g) = 1 / (1 + exp(-g)) on 4 lanes
  (func $sigmoid4 (param $g v128) (result v128)
    (f32x4.div (f32x4.splat (f32.const 1))
      (f32x4.add (f32x4.splat (f32.const 1)) (call $exp4 (f32x4.neg (local.get $g))))))

  ;; out[i] = silu(gate[i]) * up[i], i in [0, n)
  (func (export "swiglu_forward") (param $out i32) (param $gate i32) (param $up i32) (param $n i32)
    (local $end i32) (local $g v128)
    (local.set $end (i32.add (local.get $gate) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $gate) (local.get $end)))
        (local.set $g (v128.load (local.get $gate)))
        (v128.store (local.get $out)
          (f32x4.mul (f32x4.mul (local.get $g) (call $sigmoid4 (local.get $g))) (v128.load (local.get $up))))
        (local.set $gate (i32.add (local.get $gate) (i32.const 16)))
        (local.set $up (i32.add (local.get $up) (i32.const 16)))
        (local.set $out (i32.add (local.get $out) (i32.const 16)))
        (br $l))))

  ;; dgate[i] += dout * up * s * (1 + g (1 - s)), dup[i] += dout * g * s, s = sigmoid(g), i in [0, n)
  (func (export "swiglu_backward") (param $dgate i32) (param $dup i32) (param $dout i32) (param $gate i32) (param $up i32) (param $n i32)
    (local $end i32) (local $g v128) (local $s v128) (local $d v128)
    (local.set $end (i32.add (local.get $gate) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $gate) (local.get $end)))
        (local.set $g (v128.load (local.get $gate)))
        (local.set $s (call $sigmoid4 (local.get $g)))
        (local.set $d (v128.load (local.get $dout)))
        (v128.store (local.get $dgate) (f32x4.add (v128.load (local.get $dgate))
          (f32x4.mul (f32x4.mul (f32x4.mul (local.get $d) (v128.load (local.get $up))) (local.get $s))
            (f32x4.add (f32x4.splat (f32.const 1))
              (f32x4.mul (local.get $g) (f32x4.sub (f32x4.splat (f32.const 1)) (local.get $s)))))))
        (v128.store (local.get $dup) (f32x4.add (v128.load (local.get $dup))
          (f32x4.mul (f32x4.mul (local.get $d) (local.get $g)) (local.get $s))))
        (local.set $gate (i32.add (local.get $gate) (i32.const 16)))
        (local.set $up (i32.add (local.get $up) (i32.const 16)))
        (local.set $dout (i32.add (local.get $dout) (i32.const 16)))
        (local.set $dgate (i32.add (local.get $dgate) (i32.const 16)))
        (local.set $dup (i32.add (local.get $dup) (i32.const 16)))
        (br $l))))
)

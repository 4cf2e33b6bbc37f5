;; WASM SIMD128 kernels of the Llama layers on the CPU backend: SwiGLU forward and backward (an exp
;; per element, which scalar TypeScript pays for through Math.exp), RMSNorm's forward and input
;; gradient (C a multiple of 4; the weight gradient stays in TypeScript).
;; Assembled at load time by llama-wasm.ts (the `wabt` npm package); imports the backend's shared
;; memory like kernels.wat. Pointers in BYTES; n, C multiples of 4 (the caller does the rest).
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

  ;; horizontal sum of 4 lanes, in f64
  (func $hsum (param $v v128) (result f64)
    (f64.add
      (f64.add (f64.promote_f32 (f32x4.extract_lane 0 (local.get $v))) (f64.promote_f32 (f32x4.extract_lane 1 (local.get $v))))
      (f64.add (f64.promote_f32 (f32x4.extract_lane 2 (local.get $v))) (f64.promote_f32 (f32x4.extract_lane 3 (local.get $v))))))

  ;; rows [r0, r1) of inp [N, C]: rstd = 1/sqrt(mean(x^2) + eps), out = x * rstd * w
  (func (export "rmsnorm_forward") (param $out i32) (param $rstd i32) (param $inp i32) (param $w i32) (param $C i32) (param $r0 i32) (param $r1 i32) (param $eps f64)
    (local $n i32) (local $i i32) (local $row i32) (local $bytes i32) (local $acc v128) (local $x v128) (local $s f32)
    (local.set $bytes (i32.shl (local.get $C) (i32.const 2)))
    (local.set $n (local.get $r0))
    (block $rows_done
      (loop $rows
        (br_if $rows_done (i32.ge_u (local.get $n) (local.get $r1)))
        (local.set $row (i32.mul (local.get $n) (local.get $bytes)))
        (local.set $acc (f32x4.splat (f32.const 0)))
        (local.set $i (i32.const 0))
        (block $d1 (loop $l1
          (br_if $d1 (i32.ge_u (local.get $i) (local.get $bytes)))
          (local.set $x (v128.load (i32.add (local.get $inp) (i32.add (local.get $row) (local.get $i)))))
          (local.set $acc (f32x4.add (local.get $acc) (f32x4.mul (local.get $x) (local.get $x))))
          (local.set $i (i32.add (local.get $i) (i32.const 16)))
          (br $l1)))
        (local.set $s (f32.demote_f64 (f64.div (f64.const 1)
          (f64.sqrt (f64.add (f64.div (call $hsum (local.get $acc)) (f64.convert_i32_u (local.get $C))) (local.get $eps))))))
        (f32.store (i32.add (local.get $rstd) (i32.shl (local.get $n) (i32.const 2))) (local.get $s))
        (local.set $i (i32.const 0))
        (block $d2 (loop $l2
          (br_if $d2 (i32.ge_u (local.get $i) (local.get $bytes)))
          (v128.store (i32.add (local.get $out) (i32.add (local.get $row) (local.get $i)))
            (f32x4.mul (f32x4.mul (v128.load (i32.add (local.get $inp) (i32.add (local.get $row) (local.get $i)))) (f32x4.splat (local.get $s)))
              (v128.load (i32.add (local.get $w) (local.get $i)))))
          (local.set $i (i32.add (local.get $i) (i32.const 16)))
          (br $l2)))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $rows))))

  ;; rows [r0, r1): dinp += rstd * (w*dout - x * k), k = rstd^2 * dot(w*dout, x) / C
  (func (export "rmsnorm_backward_input") (param $dinp i32) (param $dout i32) (param $inp i32) (param $w i32) (param $rstd i32) (param $C i32) (param $r0 i32) (param $r1 i32)
    (local $n i32) (local $i i32) (local $row i32) (local $bytes i32) (local $acc v128) (local $s f32) (local $k f32) (local $wd v128) (local $p i32)
    (local.set $bytes (i32.shl (local.get $C) (i32.const 2)))
    (local.set $n (local.get $r0))
    (block $rows_done
      (loop $rows
        (br_if $rows_done (i32.ge_u (local.get $n) (local.get $r1)))
        (local.set $row (i32.mul (local.get $n) (local.get $bytes)))
        (local.set $s (f32.load (i32.add (local.get $rstd) (i32.shl (local.get $n) (i32.const 2)))))
        (local.set $acc (f32x4.splat (f32.const 0)))
        (local.set $i (i32.const 0))
        (block $d1 (loop $l1
          (br_if $d1 (i32.ge_u (local.get $i) (local.get $bytes)))
          (local.set $p (i32.add (local.get $row) (local.get $i)))
          (local.set $acc (f32x4.add (local.get $acc)
            (f32x4.mul (f32x4.mul (v128.load (i32.add (local.get $w) (local.get $i))) (v128.load (i32.add (local.get $dout) (local.get $p))))
              (v128.load (i32.add (local.get $inp) (local.get $p))))))
          (local.set $i (i32.add (local.get $i) (i32.const 16)))
          (br $l1)))
        (local.set $k (f32.demote_f64 (f64.div
          (f64.mul (call $hsum (local.get $acc)) (f64.mul (f64.promote_f32 (local.get $s)) (f64.promote_f32 (local.get $s))))
          (f64.convert_i32_u (local.get $C)))))
        (local.set $i (i32.const 0))
        (block $d2 (loop $l2
          (br_if $d2 (i32.ge_u (local.get $i) (local.get $bytes)))
          (local.set $p (i32.add (local.get $row) (local.get $i)))
          (local.set $wd (f32x4.mul (v128.load (i32.add (local.get $w) (local.get $i))) (v128.load (i32.add (local.get $dout) (local.get $p)))))
          (v128.store (i32.add (local.get $dinp) (local.get $p))
            (f32x4.add (v128.load (i32.add (local.get $dinp) (local.get $p)))
              (f32x4.mul (f32x4.splat (local.get $s))
                (f32x4.sub (local.get $wd) (f32x4.mul (v128.load (i32.add (local.get $inp) (local.get $p))) (f32x4.splat (local.get $k)))))))
          (local.set $i (i32.add (local.get $i) (i32.const 16)))
          (br $l2)))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $rows))))
)

;; WASM SIMD128 kernels of the CPU backend: the matmul micro-kernels (a packed-panel GEMM) and the
;; inner loops of attention. Assembled at load time with the `wabt` npm package (wasm.ts); the
;; module imports the backend's shared memory, so every worker thread runs it on the same tensors.
;; All pointers and strides are in BYTES. Checked against the float64 references by the compliance suite.
(module
  (import "env" "memory" (memory 1 65536 shared))

  ;; ---- GEMM ----------------------------------------------------------------------------------
  ;; C[M, ncols] (+)= A[M, K] @ B[K, ncols] (+ bias), B packed in panels of 8 columns:
  ;; panel p holds B[k, 8p + jj] at Bp + p*ps + k*32 + jj*4 (zero padded past ncols); ps >= 32K
  ;; (a K-slice of a longer packed B has the longer panel stride).
  ;; A(m, k) at A + (m & ~3)*sam + (m & 3)*sar + k*sak: a plain (possibly transposed) view has
  ;; sar = sam; A packed in 4-row panels (the 4 values of one k adjacent) has sam = 4K, sar = 4, sak = 16.
  ;; C(m, j) at C + m*ldc + j*4. np panels; the last has nlast (1..8) valid columns.
  ;; beta 0: C = A@B (+ bias); beta 1: C += A@B. bias: 0, or pointer to bias[ncols].
  ;; tmp: 32 bytes of scratch for partial panels. K >= 1.
  ;; Loop nest: row blocks of 64 (A block stays in L2) x panels (32*K bytes, in L1) x 4-row tiles.
  (func $gemm (export "gemm")
    (param $A i32) (param $sam i32) (param $sar i32) (param $sak i32)
    (param $Bp i32) (param $ps i32) (param $C i32) (param $ldc i32)
    (param $M i32) (param $K i32) (param $np i32) (param $nlast i32)
    (param $beta i32) (param $bias i32) (param $tmp i32)
    (local $i0 i32) (local $i1 i32) (local $i i32) (local $p i32) (local $k i32)
    (local $bp i32) (local $cols i32) (local $bb i32) (local $c i32)
    (local $pa0 i32) (local $pa1 i32) (local $pa2 i32) (local $pa3 i32) (local $pb i32)
    (local $a v128) (local $b0 v128) (local $b1 v128)
    (local $c00 v128) (local $c01 v128) (local $c10 v128) (local $c11 v128)
    (local $c20 v128) (local $c21 v128) (local $c30 v128) (local $c31 v128)
    (block $done_rows
      (loop $rowblocks
        (br_if $done_rows (i32.ge_u (local.get $i0) (local.get $M)))
        (local.set $i1 (i32.add (local.get $i0) (i32.const 64)))
        (if (i32.gt_u (local.get $i1) (local.get $M)) (then (local.set $i1 (local.get $M))))
        (local.set $p (i32.const 0))
        (loop $panels
          (local.set $bp (i32.add (local.get $Bp) (i32.mul (local.get $p) (local.get $ps))))
          (local.set $cols (select (local.get $nlast) (i32.const 8) (i32.eq (local.get $p) (i32.sub (local.get $np) (i32.const 1)))))
          (local.set $bb (select (i32.add (local.get $bias) (i32.shl (local.get $p) (i32.const 5))) (i32.const 0) (local.get $bias)))
          (local.set $i (local.get $i0))
          ;; 4-row tiles: 8 accumulators (4 rows x 8 columns)
          (block $done4
            (loop $tiles4
              (br_if $done4 (i32.gt_u (i32.add (local.get $i) (i32.const 4)) (local.get $i1)))
              (local.set $pa0 (i32.add (local.get $A) (i32.mul (local.get $i) (local.get $sam))))
              (local.set $pa1 (i32.add (local.get $pa0) (local.get $sar)))
              (local.set $pa2 (i32.add (local.get $pa1) (local.get $sar)))
              (local.set $pa3 (i32.add (local.get $pa2) (local.get $sar)))
              (local.set $pb (local.get $bp))
              (local.set $c00 (v128.const i32x4 0 0 0 0)) (local.set $c01 (v128.const i32x4 0 0 0 0))
              (local.set $c10 (v128.const i32x4 0 0 0 0)) (local.set $c11 (v128.const i32x4 0 0 0 0))
              (local.set $c20 (v128.const i32x4 0 0 0 0)) (local.set $c21 (v128.const i32x4 0 0 0 0))
              (local.set $c30 (v128.const i32x4 0 0 0 0)) (local.set $c31 (v128.const i32x4 0 0 0 0))
              (local.set $k (local.get $K))
              (loop $kloop4
                (local.set $b0 (v128.load (local.get $pb)))
                (local.set $b1 (v128.load offset=16 (local.get $pb)))
                (local.set $a (v128.load32_splat (local.get $pa0)))
                (local.set $c00 (f32x4.add (local.get $c00) (f32x4.mul (local.get $a) (local.get $b0))))
                (local.set $c01 (f32x4.add (local.get $c01) (f32x4.mul (local.get $a) (local.get $b1))))
                (local.set $a (v128.load32_splat (local.get $pa1)))
                (local.set $c10 (f32x4.add (local.get $c10) (f32x4.mul (local.get $a) (local.get $b0))))
                (local.set $c11 (f32x4.add (local.get $c11) (f32x4.mul (local.get $a) (local.get $b1))))
                (local.set $a (v128.load32_splat (local.get $pa2)))
                (local.set $c20 (f32x4.add (local.get $c20) (f32x4.mul (local.get $a) (local.get $b0))))
                (local.set $c21 (f32x4.add (local.get $c21) (f32x4.mul (local.get $a) (local.get $b1))))
                (local.set $a (v128.load32_splat (local.get $pa3)))
                (local.set $c30 (f32x4.add (local.get $c30) (f32x4.mul (local.get $a) (local.get $b0))))
                (local.set $c31 (f32x4.add (local.get $c31) (f32x4.mul (local.get $a) (local.get $b1))))
                (local.set $pb (i32.add (local.get $pb) (i32.const 32)))
                (local.set $pa0 (i32.add (local.get $pa0) (local.get $sak)))
                (local.set $pa1 (i32.add (local.get $pa1) (local.get $sak)))
                (local.set $pa2 (i32.add (local.get $pa2) (local.get $sak)))
                (local.set $pa3 (i32.add (local.get $pa3) (local.get $sak)))
                (br_if $kloop4 (local.tee $k (i32.sub (local.get $k) (i32.const 1)))))
              (local.set $c (i32.add (i32.add (local.get $C) (i32.mul (local.get $i) (local.get $ldc))) (i32.shl (local.get $p) (i32.const 5))))
              (call $store8 (local.get $c) (local.get $c00) (local.get $c01) (local.get $cols) (local.get $beta) (local.get $bb) (local.get $tmp))
              (local.set $c (i32.add (local.get $c) (local.get $ldc)))
              (call $store8 (local.get $c) (local.get $c10) (local.get $c11) (local.get $cols) (local.get $beta) (local.get $bb) (local.get $tmp))
              (local.set $c (i32.add (local.get $c) (local.get $ldc)))
              (call $store8 (local.get $c) (local.get $c20) (local.get $c21) (local.get $cols) (local.get $beta) (local.get $bb) (local.get $tmp))
              (local.set $c (i32.add (local.get $c) (local.get $ldc)))
              (call $store8 (local.get $c) (local.get $c30) (local.get $c31) (local.get $cols) (local.get $beta) (local.get $bb) (local.get $tmp))
              (local.set $i (i32.add (local.get $i) (i32.const 4)))
              (br $tiles4)))
          ;; leftover rows one at a time
          (block $done1
            (loop $tiles1
              (br_if $done1 (i32.ge_u (local.get $i) (local.get $i1)))
              (local.set $pa0 (i32.add (local.get $A) (i32.add
                (i32.mul (i32.and (local.get $i) (i32.const -4)) (local.get $sam))
                (i32.mul (i32.and (local.get $i) (i32.const 3)) (local.get $sar)))))
              (local.set $pb (local.get $bp))
              (local.set $c00 (v128.const i32x4 0 0 0 0)) (local.set $c01 (v128.const i32x4 0 0 0 0))
              (local.set $k (local.get $K))
              (loop $kloop1
                (local.set $a (v128.load32_splat (local.get $pa0)))
                (local.set $c00 (f32x4.add (local.get $c00) (f32x4.mul (local.get $a) (v128.load (local.get $pb)))))
                (local.set $c01 (f32x4.add (local.get $c01) (f32x4.mul (local.get $a) (v128.load offset=16 (local.get $pb)))))
                (local.set $pb (i32.add (local.get $pb) (i32.const 32)))
                (local.set $pa0 (i32.add (local.get $pa0) (local.get $sak)))
                (br_if $kloop1 (local.tee $k (i32.sub (local.get $k) (i32.const 1)))))
              (local.set $c (i32.add (i32.add (local.get $C) (i32.mul (local.get $i) (local.get $ldc))) (i32.shl (local.get $p) (i32.const 5))))
              (call $store8 (local.get $c) (local.get $c00) (local.get $c01) (local.get $cols) (local.get $beta) (local.get $bb) (local.get $tmp))
              (local.set $i (i32.add (local.get $i) (i32.const 1)))
              (br $tiles1)))
          (br_if $panels (i32.lt_u (local.tee $p (i32.add (local.get $p) (i32.const 1))) (local.get $np))))
        (local.set $i0 (local.get $i1))
        (br $rowblocks))))

;; ---- packing for the GEMM (pointers and strides in bytes) --------------------------------------

  ;; dst[(p*K + k)*8 + jj] = B(k, 8p + jj) = b[k*sbk + (8p + jj)*sbj], zero for columns >= cols
  (func (export "pack_b") (param $b i32) (param $sbk i32) (param $sbj i32) (param $K i32) (param $cols i32) (param $dst i32)
    (local $p i32) (local $np i32) (local $valid i32) (local $k i32) (local $src i32) (local $jj i32)
    (local.set $np (i32.shr_u (i32.add (local.get $cols) (i32.const 7)) (i32.const 3)))
    (block $done
      (loop $panels
        (br_if $done (i32.ge_u (local.get $p) (local.get $np)))
        (local.set $valid (i32.sub (local.get $cols) (i32.shl (local.get $p) (i32.const 3))))
        (if (i32.gt_u (local.get $valid) (i32.const 8)) (then (local.set $valid (i32.const 8))))
        (local.set $src (i32.add (local.get $b) (i32.mul (i32.shl (local.get $p) (i32.const 3)) (local.get $sbj))))
        (local.set $k (local.get $K))
        (if (i32.and (i32.eq (local.get $valid) (i32.const 8)) (i32.eq (local.get $sbj) (i32.const 4)))
          (then ;; a full panel of a row-major B: two vector copies per k
            (loop $rows
              (v128.store (local.get $dst) (v128.load (local.get $src)))
              (v128.store offset=16 (local.get $dst) (v128.load offset=16 (local.get $src)))
              (local.set $src (i32.add (local.get $src) (local.get $sbk)))
              (local.set $dst (i32.add (local.get $dst) (i32.const 32)))
              (br_if $rows (local.tee $k (i32.sub (local.get $k) (i32.const 1))))))
          (else
            (loop $rows2
              (local.set $jj (i32.const 0))
              (loop $cols
                (f32.store (i32.add (local.get $dst) (i32.shl (local.get $jj) (i32.const 2)))
                  (f32.load (i32.add (local.get $src) (i32.mul (local.get $jj) (local.get $sbj)))))
                (br_if $cols (i32.lt_u (local.tee $jj (i32.add (local.get $jj) (i32.const 1))) (local.get $valid))))
              (local.set $jj (local.get $valid))
              (block $zdone
                (loop $zero
                  (br_if $zdone (i32.ge_u (local.get $jj) (i32.const 8)))
                  (f32.store (i32.add (local.get $dst) (i32.shl (local.get $jj) (i32.const 2))) (f32.const 0))
                  (local.set $jj (i32.add (local.get $jj) (i32.const 1)))
                  (br $zero)))
              (local.set $src (i32.add (local.get $src) (local.get $sbk)))
              (local.set $dst (i32.add (local.get $dst) (i32.const 32)))
              (br_if $rows2 (local.tee $k (i32.sub (local.get $k) (i32.const 1)))))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (br $panels))))

  ;; dst[(m & ~3)*K + k*4 + (m & 3)] = A(m, k) = a[m*sam + k*sak], zero for rows >= M
  (func (export "pack_a4") (param $a i32) (param $sam i32) (param $sak i32) (param $M i32) (param $K i32) (param $dst i32)
    (local $m0 i32) (local $valid i32) (local $k i32) (local $src i32) (local $r i32)
    (block $done
      (loop $blocks
        (br_if $done (i32.ge_u (local.get $m0) (local.get $M)))
        (local.set $valid (i32.sub (local.get $M) (local.get $m0)))
        (if (i32.gt_u (local.get $valid) (i32.const 4)) (then (local.set $valid (i32.const 4))))
        (local.set $src (i32.add (local.get $a) (i32.mul (local.get $m0) (local.get $sam))))
        (local.set $k (local.get $K))
        (if (i32.and (i32.eq (local.get $valid) (i32.const 4)) (i32.eq (local.get $sam) (i32.const 4)))
          (then ;; 4 rows adjacent in memory (a transposed view): one vector per k
            (loop $ks
              (v128.store (local.get $dst) (v128.load (local.get $src)))
              (local.set $src (i32.add (local.get $src) (local.get $sak)))
              (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
              (br_if $ks (local.tee $k (i32.sub (local.get $k) (i32.const 1))))))
          (else
            (loop $ks2
              (local.set $r (i32.const 0))
              (loop $rs
                ;; no load past row M (it could lie past the end of memory)
                (f32.store (i32.add (local.get $dst) (i32.shl (local.get $r) (i32.const 2)))
                  (if (result f32) (i32.lt_u (local.get $r) (local.get $valid))
                    (then (f32.load (i32.add (local.get $src) (i32.mul (local.get $r) (local.get $sam)))))
                    (else (f32.const 0))))
                (br_if $rs (i32.lt_u (local.tee $r (i32.add (local.get $r) (i32.const 1))) (i32.const 4))))
              (local.set $src (i32.add (local.get $src) (local.get $sak)))
              (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
              (br_if $ks2 (local.tee $k (i32.sub (local.get $k) (i32.const 1)))))))
        (local.set $m0 (i32.add (local.get $m0) (i32.const 4)))
        (br $blocks))))

    ;; Store 8 columns (v0: 0..3, v1: 4..7) of one C row: add bias, add old C if beta, write only
  ;; `cols` columns (a partial last panel goes through tmp).
  (func $store8 (param $c i32) (param $v0 v128) (param $v1 v128) (param $cols i32) (param $beta i32) (param $bias i32) (param $tmp i32)
    (local $j i32) (local $old f32)
    (if (local.get $bias) (then
      (local.set $v0 (f32x4.add (local.get $v0) (v128.load (local.get $bias))))
      (local.set $v1 (f32x4.add (local.get $v1) (v128.load offset=16 (local.get $bias))))))
    (if (i32.eq (local.get $cols) (i32.const 8))
      (then
        (if (local.get $beta) (then
          (local.set $v0 (f32x4.add (local.get $v0) (v128.load (local.get $c))))
          (local.set $v1 (f32x4.add (local.get $v1) (v128.load offset=16 (local.get $c))))))
        (v128.store (local.get $c) (local.get $v0))
        (v128.store offset=16 (local.get $c) (local.get $v1)))
      (else
        (v128.store (local.get $tmp) (local.get $v0))
        (v128.store offset=16 (local.get $tmp) (local.get $v1))
        (loop $colloop
          (local.set $old (select (f32.load (local.get $c)) (f32.const 0) (local.get $beta)))
          (f32.store (local.get $c) (f32.add (local.get $old) (f32.load (local.get $tmp))))
          (local.set $c (i32.add (local.get $c) (i32.const 4)))
          (local.set $tmp (i32.add (local.get $tmp) (i32.const 4)))
          (br_if $colloop (local.tee $cols (i32.sub (local.get $cols) (i32.const 1))))))))

  ;; ---- layernorm and column sums (C a multiple of 4; pointers to row 0, rows [r0, r1)) -------------

  (func $hsum (param $v v128) (result f32)
    (f32.add (f32.add (f32x4.extract_lane 0 (local.get $v)) (f32x4.extract_lane 1 (local.get $v)))
             (f32.add (f32x4.extract_lane 2 (local.get $v)) (f32x4.extract_lane 3 (local.get $v)))))

  ;; two passes per row (mean, then variance of the deviations), eps 1e-5
  (func (export "layernorm_forward") (param $out i32) (param $mean i32) (param $rstd i32) (param $inp i32)
    (param $w i32) (param $b i32) (param $C i32) (param $r0 i32) (param $r1 i32)
    (local $n i32) (local $x i32) (local $o i32) (local $i i32) (local $end i32)
    (local $s v128) (local $d v128) (local $m f32) (local $r f32) (local $mv v128) (local $rv v128)
    (local.set $end (i32.shl (local.get $C) (i32.const 2)))
    (local.set $n (local.get $r0))
    (block $done
      (loop $rows
        (br_if $done (i32.ge_u (local.get $n) (local.get $r1)))
        (local.set $x (i32.add (local.get $inp) (i32.mul (local.get $n) (local.get $end))))
        (local.set $o (i32.add (local.get $out) (i32.mul (local.get $n) (local.get $end))))
        (local.set $s (v128.const i32x4 0 0 0 0))
        (local.set $i (i32.const 0))
        (loop $sum
          (local.set $s (f32x4.add (local.get $s) (v128.load (i32.add (local.get $x) (local.get $i)))))
          (br_if $sum (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 16))) (local.get $end))))
        (local.set $m (f32.div (call $hsum (local.get $s)) (f32.convert_i32_u (local.get $C))))
        (local.set $mv (f32x4.splat (local.get $m)))
        (local.set $s (v128.const i32x4 0 0 0 0))
        (local.set $i (i32.const 0))
        (loop $var
          (local.set $d (f32x4.sub (v128.load (i32.add (local.get $x) (local.get $i))) (local.get $mv)))
          (local.set $s (f32x4.add (local.get $s) (f32x4.mul (local.get $d) (local.get $d))))
          (br_if $var (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 16))) (local.get $end))))
        (local.set $r (f32.div (f32.const 1) (f32.sqrt (f32.add
          (f32.div (call $hsum (local.get $s)) (f32.convert_i32_u (local.get $C))) (f32.const 1e-5)))))
        (local.set $rv (f32x4.splat (local.get $r)))
        (local.set $i (i32.const 0))
        (loop $norm
          (v128.store (i32.add (local.get $o) (local.get $i))
            (f32x4.add
              (f32x4.mul (f32x4.mul (f32x4.sub (v128.load (i32.add (local.get $x) (local.get $i))) (local.get $mv)) (local.get $rv))
                (v128.load (i32.add (local.get $w) (local.get $i))))
              (v128.load (i32.add (local.get $b) (local.get $i)))))
          (br_if $norm (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 16))) (local.get $end))))
        (f32.store (i32.add (local.get $mean) (i32.shl (local.get $n) (i32.const 2))) (local.get $m))
        (f32.store (i32.add (local.get $rstd) (i32.shl (local.get $n) (i32.const 2))) (local.get $r))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $rows))))

  ;; dinp += (dnorm - mean(dnorm) - norm * mean(dnorm * norm)) * rstd, dnorm = w * dout
  (func (export "layernorm_backward_input") (param $dinp i32) (param $dout i32) (param $inp i32) (param $w i32)
    (param $mean i32) (param $rstd i32) (param $C i32) (param $r0 i32) (param $r1 i32)
    (local $n i32) (local $row i32) (local $i i32) (local $end i32)
    (local $mv v128) (local $rv v128) (local $s1 v128) (local $s2 v128) (local $norm v128) (local $dnorm v128)
    (local $a v128) (local $bq v128) (local $invC f32)
    (local.set $end (i32.shl (local.get $C) (i32.const 2)))
    (local.set $invC (f32.div (f32.const 1) (f32.convert_i32_u (local.get $C))))
    (local.set $n (local.get $r0))
    (block $done
      (loop $rows
        (br_if $done (i32.ge_u (local.get $n) (local.get $r1)))
        (local.set $row (i32.mul (local.get $n) (local.get $end)))
        (local.set $mv (f32x4.splat (f32.load (i32.add (local.get $mean) (i32.shl (local.get $n) (i32.const 2))))))
        (local.set $rv (f32x4.splat (f32.load (i32.add (local.get $rstd) (i32.shl (local.get $n) (i32.const 2))))))
        (local.set $s1 (v128.const i32x4 0 0 0 0))
        (local.set $s2 (v128.const i32x4 0 0 0 0))
        (local.set $i (i32.const 0))
        (loop $red
          (local.set $norm (f32x4.mul (f32x4.sub (v128.load (i32.add (i32.add (local.get $inp) (local.get $row)) (local.get $i))) (local.get $mv)) (local.get $rv)))
          (local.set $dnorm (f32x4.mul (v128.load (i32.add (local.get $w) (local.get $i))) (v128.load (i32.add (i32.add (local.get $dout) (local.get $row)) (local.get $i)))))
          (local.set $s1 (f32x4.add (local.get $s1) (local.get $dnorm)))
          (local.set $s2 (f32x4.add (local.get $s2) (f32x4.mul (local.get $dnorm) (local.get $norm))))
          (br_if $red (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 16))) (local.get $end))))
        (local.set $a (f32x4.splat (f32.mul (call $hsum (local.get $s1)) (local.get $invC))))
        (local.set $bq (f32x4.splat (f32.mul (call $hsum (local.get $s2)) (local.get $invC))))
        (local.set $i (i32.const 0))
        (loop $upd
          (local.set $norm (f32x4.mul (f32x4.sub (v128.load (i32.add (i32.add (local.get $inp) (local.get $row)) (local.get $i))) (local.get $mv)) (local.get $rv)))
          (local.set $dnorm (f32x4.mul (v128.load (i32.add (local.get $w) (local.get $i))) (v128.load (i32.add (i32.add (local.get $dout) (local.get $row)) (local.get $i)))))
          (v128.store (i32.add (i32.add (local.get $dinp) (local.get $row)) (local.get $i))
            (f32x4.add (v128.load (i32.add (i32.add (local.get $dinp) (local.get $row)) (local.get $i)))
              (f32x4.mul (f32x4.sub (f32x4.sub (local.get $dnorm) (local.get $a)) (f32x4.mul (local.get $norm) (local.get $bq))) (local.get $rv))))
          (br_if $upd (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 16))) (local.get $end))))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $rows))))

  ;; channels [c0, c1) (multiples of 4): dbias += sum_n dout, dweight += sum_n norm * dout
  (func (export "layernorm_backward_params") (param $dw i32) (param $db i32) (param $dout i32) (param $inp i32)
    (param $mean i32) (param $rstd i32) (param $N i32) (param $C i32) (param $c0 i32) (param $c1 i32)
    (local $n i32) (local $row i32) (local $i i32) (local $end i32) (local $mv v128) (local $rv v128) (local $d v128) (local $off i32)
    (local.set $end (i32.shl (local.get $c1) (i32.const 2)))
    (block $done
      (loop $rows
        (br_if $done (i32.ge_u (local.get $n) (local.get $N)))
        (local.set $row (i32.shl (i32.mul (local.get $n) (local.get $C)) (i32.const 2)))
        (local.set $mv (f32x4.splat (f32.load (i32.add (local.get $mean) (i32.shl (local.get $n) (i32.const 2))))))
        (local.set $rv (f32x4.splat (f32.load (i32.add (local.get $rstd) (i32.shl (local.get $n) (i32.const 2))))))
        (local.set $i (i32.shl (local.get $c0) (i32.const 2)))
        (block $cdone
          (loop $chan
            (br_if $cdone (i32.ge_u (local.get $i) (local.get $end)))
            (local.set $off (i32.add (local.get $row) (local.get $i)))
            (local.set $d (v128.load (i32.add (local.get $dout) (local.get $off))))
            (v128.store (i32.add (local.get $db) (local.get $i)) (f32x4.add (v128.load (i32.add (local.get $db) (local.get $i))) (local.get $d)))
            (v128.store (i32.add (local.get $dw) (local.get $i))
              (f32x4.add (v128.load (i32.add (local.get $dw) (local.get $i)))
                (f32x4.mul (f32x4.mul (f32x4.sub (v128.load (i32.add (local.get $inp) (local.get $off))) (local.get $mv)) (local.get $rv)) (local.get $d))))
            (local.set $i (i32.add (local.get $i) (i32.const 16)))
            (br $chan)))
        (local.set $n (i32.add (local.get $n) (i32.const 1)))
        (br $rows))))

  ;; dst[j] += sum_{r < rows} src[r*ld + j] for j in [0, ncols), ncols a multiple of 4; ld in bytes
  (func (export "colsum_add") (param $src i32) (param $ld i32) (param $rows i32) (param $ncols i32) (param $dst i32)
    (local $j i32) (local $end i32) (local $r i32) (local $p i32) (local $s v128)
    (local.set $end (i32.shl (local.get $ncols) (i32.const 2)))
    (block $done
      (loop $cols
        (br_if $done (i32.ge_u (local.get $j) (local.get $end)))
        (local.set $s (v128.const i32x4 0 0 0 0))
        (local.set $p (i32.add (local.get $src) (local.get $j)))
        (local.set $r (local.get $rows))
        (block $rdone
          (loop $rl
            (br_if $rdone (i32.eqz (local.get $r)))
            (local.set $s (f32x4.add (local.get $s) (v128.load (local.get $p))))
            (local.set $p (i32.add (local.get $p) (local.get $ld)))
            (local.set $r (i32.sub (local.get $r) (i32.const 1)))
            (br $rl)))
        (v128.store (i32.add (local.get $dst) (local.get $j)) (f32x4.add (v128.load (i32.add (local.get $dst) (local.get $j))) (local.get $s)))
        (local.set $j (i32.add (local.get $j) (i32.const 16)))
        (br $cols))))

  ;; ---- GELU (tanh approximation), 4 lanes at a time ------------------------------------------

  ;; tanh(x) for f32x4: Eigen's rational approximation (odd 13/6 polynomial ratio, float32-accurate),
  ;; input clamped to +-7.90531110763549805 where it rounds to +-1; NaN propagates.
  (func $tanh4 (param $x v128) (result v128)
    (local $x2 v128) (local $p v128) (local $q v128)
    (local.set $x (f32x4.min (f32x4.splat (f32.const 7.90531110763549805))
      (f32x4.max (f32x4.splat (f32.const -7.90531110763549805)) (local.get $x))))
    (local.set $x2 (f32x4.mul (local.get $x) (local.get $x)))
    (local.set $p (f32x4.splat (f32.const -2.76076847742355e-16)))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $x2)) (f32x4.splat (f32.const 2.00018790482477e-13))))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $x2)) (f32x4.splat (f32.const -8.60467152213735e-11))))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $x2)) (f32x4.splat (f32.const 5.12229709037114e-08))))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $x2)) (f32x4.splat (f32.const 1.48572235717979e-05))))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $x2)) (f32x4.splat (f32.const 6.37261928875436e-04))))
    (local.set $p (f32x4.add (f32x4.mul (local.get $p) (local.get $x2)) (f32x4.splat (f32.const 4.89352455891786e-03))))
    (local.set $p (f32x4.mul (local.get $p) (local.get $x)))
    (local.set $q (f32x4.splat (f32.const 1.19825839466702e-06)))
    (local.set $q (f32x4.add (f32x4.mul (local.get $q) (local.get $x2)) (f32x4.splat (f32.const 1.18534705686654e-04))))
    (local.set $q (f32x4.add (f32x4.mul (local.get $q) (local.get $x2)) (f32x4.splat (f32.const 2.26843463243900e-03))))
    (local.set $q (f32x4.add (f32x4.mul (local.get $q) (local.get $x2)) (f32x4.splat (f32.const 4.89352518554385e-03))))
    (f32x4.div (local.get $p) (local.get $q)))

  ;; u = sqrt(2/pi) * (x + 0.044715 x^3)
  (func $gelu_arg (param $x v128) (result v128)
    (f32x4.mul (f32x4.splat (f32.const 0.7978845608028654))
      (f32x4.add (local.get $x)
        (f32x4.mul (f32x4.splat (f32.const 0.044715)) (f32x4.mul (local.get $x) (f32x4.mul (local.get $x) (local.get $x)))))))

  ;; out[i] = 0.5 x (1 + tanh(u)), i in [0, n), n a multiple of 4
  (func (export "gelu_forward") (param $out i32) (param $inp i32) (param $n i32)
    (local $end i32) (local $x v128)
    (local.set $end (i32.add (local.get $inp) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $inp) (local.get $end)))
        (local.set $x (v128.load (local.get $inp)))
        (v128.store (local.get $out)
          (f32x4.mul (f32x4.mul (f32x4.splat (f32.const 0.5)) (local.get $x))
            (f32x4.add (f32x4.splat (f32.const 1)) (call $tanh4 (call $gelu_arg (local.get $x))))))
        (local.set $inp (i32.add (local.get $inp) (i32.const 16)))
        (local.set $out (i32.add (local.get $out) (i32.const 16)))
        (br $l))))

  ;; dinp[i] += (0.5 (1 + th) + 0.5 x (1 - th^2) sqrt(2/pi) (1 + 3 * 0.044715 x^2)) dout[i], n a multiple of 4
  (func (export "gelu_backward") (param $dinp i32) (param $inp i32) (param $dout i32) (param $n i32)
    (local $end i32) (local $x v128) (local $th v128) (local $g v128)
    (local.set $end (i32.add (local.get $inp) (i32.shl (local.get $n) (i32.const 2))))
    (block $done
      (loop $l
        (br_if $done (i32.ge_u (local.get $inp) (local.get $end)))
        (local.set $x (v128.load (local.get $inp)))
        (local.set $th (call $tanh4 (call $gelu_arg (local.get $x))))
        (local.set $g (f32x4.add
          (f32x4.mul (f32x4.splat (f32.const 0.5)) (f32x4.add (f32x4.splat (f32.const 1)) (local.get $th)))
          (f32x4.mul
            (f32x4.mul (f32x4.mul (f32x4.splat (f32.const 0.3989422804014327)) (local.get $x)) ;; 0.5 * sqrt(2/pi)
              (f32x4.sub (f32x4.splat (f32.const 1)) (f32x4.mul (local.get $th) (local.get $th))))
            (f32x4.add (f32x4.splat (f32.const 1)) (f32x4.mul (f32x4.splat (f32.const 0.134145)) (f32x4.mul (local.get $x) (local.get $x)))))))
        (v128.store (local.get $dinp) (f32x4.add (v128.load (local.get $dinp)) (f32x4.mul (local.get $g) (v128.load (local.get $dout)))))
        (local.set $inp (i32.add (local.get $inp) (i32.const 16)))
        (local.set $dout (i32.add (local.get $dout) (i32.const 16)))
        (local.set $dinp (i32.add (local.get $dinp) (i32.const 16)))
        (br $l))))

  ;; ---- attention inner loops (head size hs a multiple of 4) -----------------------------------

  ;; dst[j] = scale * dot(x[0..hs], row_j[0..hs]), row_j at base + j*stride, j in [0, n).
  (func (export "dots") (param $x i32) (param $base i32) (param $stride i32) (param $n i32) (param $hs i32) (param $scale f32) (param $dst i32)
    (local $row i32) (local $i i32) (local $end i32) (local $s v128)
    (local.set $end (i32.shl (local.get $hs) (i32.const 2)))
    (block $done
      (loop $rows
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $s (v128.const i32x4 0 0 0 0))
        (local.set $i (i32.const 0))
        (loop $lanes
          (local.set $s (f32x4.add (local.get $s)
            (f32x4.mul (v128.load (i32.add (local.get $x) (local.get $i))) (v128.load (i32.add (local.get $base) (local.get $i))))))
          (br_if $lanes (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 16))) (local.get $end))))
        (f32.store (local.get $dst) (f32.mul (local.get $scale)
          (f32.add (f32.add (f32x4.extract_lane 0 (local.get $s)) (f32x4.extract_lane 1 (local.get $s)))
                   (f32.add (f32x4.extract_lane 2 (local.get $s)) (f32x4.extract_lane 3 (local.get $s))))))
        (local.set $base (i32.add (local.get $base) (local.get $stride)))
        (local.set $dst (i32.add (local.get $dst) (i32.const 4)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $rows))))

  ;; dst[0..hs] = (acc ? dst : 0) + scale * sum_j coef[j] * row_j, row_j at base + j*stride, j in [0, n).
  (func (export "wsum") (param $coef i32) (param $base i32) (param $stride i32) (param $n i32) (param $hs i32) (param $scale f32) (param $dst i32) (param $acc i32)
    (local $i i32) (local $end i32) (local $j i32) (local $row i32) (local $s v128)
    (local.set $end (i32.shl (local.get $hs) (i32.const 2)))
    (loop $lanes
      (local.set $s (v128.const i32x4 0 0 0 0))
      (local.set $row (i32.add (local.get $base) (local.get $i)))
      (local.set $j (i32.const 0))
      (block $done
        (loop $rows
          (br_if $done (i32.ge_u (local.get $j) (local.get $n)))
          (local.set $s (f32x4.add (local.get $s)
            (f32x4.mul (v128.load32_splat (i32.add (local.get $coef) (i32.shl (local.get $j) (i32.const 2)))) (v128.load (local.get $row)))))
          (local.set $row (i32.add (local.get $row) (local.get $stride)))
          (local.set $j (i32.add (local.get $j) (i32.const 1)))
          (br $rows)))
      (local.set $s (f32x4.mul (local.get $s) (f32x4.splat (local.get $scale))))
      (if (local.get $acc) (then (local.set $s (f32x4.add (local.get $s) (v128.load (i32.add (local.get $dst) (local.get $i)))))))
      (v128.store (i32.add (local.get $dst) (local.get $i)) (local.get $s))
      (br_if $lanes (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 16))) (local.get $end)))))

  ;; row_j[0..hs] += scale * coef[j] * x[0..hs], row_j at base + j*stride, j in [0, n).
  (func (export "axpy_rows") (param $coef i32) (param $base i32) (param $stride i32) (param $n i32) (param $hs i32) (param $scale f32) (param $x i32)
    (local $i i32) (local $end i32) (local $c v128)
    (local.set $end (i32.shl (local.get $hs) (i32.const 2)))
    (block $done
      (loop $rows
        (br_if $done (i32.eqz (local.get $n)))
        (local.set $c (f32x4.splat (f32.mul (local.get $scale) (f32.load (local.get $coef)))))
        (local.set $i (i32.const 0))
        (loop $lanes
          (v128.store (i32.add (local.get $base) (local.get $i))
            (f32x4.add (v128.load (i32.add (local.get $base) (local.get $i)))
                       (f32x4.mul (local.get $c) (v128.load (i32.add (local.get $x) (local.get $i))))))
          (br_if $lanes (i32.lt_u (local.tee $i (i32.add (local.get $i) (i32.const 16))) (local.get $end))))
        (local.set $base (i32.add (local.get $base) (local.get $stride)))
        (local.set $coef (i32.add (local.get $coef) (i32.const 4)))
        (local.set $n (i32.sub (local.get $n) (i32.const 1)))
        (br $rows))))
)

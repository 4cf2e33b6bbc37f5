;; WASM SIMD kernels of the compression plugin (kernels.ts copies a chunk of a tensor in, runs one
;; of these on it while it is in cache, and copies the result out). Every kernel computes exactly
;; what the JS path computes (same f64 products, same truncation, same int32 bit tricks), so the
;; bytes are identical; the f64 steps run two lanes at a time for that reason (int8 encode runs f32
;; first and checks each lane, below). Kernels report
;; corrupted or non-finite input by a return value and the caller reruns the JS path, which throws
;; the precise error. Pointers are byte offsets into the module's own memory.
(module
  (memory (export "mem") 64)

  ;; max over n f32 at p of (bits & 0x7fffffff), as an unsigned int (>= 0x7f800000: NaN or Inf).
  (func $absmax (export "absmax") (param $p i32) (param $n i32) (result i32)
    (local $end i32) (local $vend i32) (local $acc v128) (local $acc2 v128) (local $m i32) (local $x i32)
    (local.set $end (i32.add (local.get $p) (i32.shl (local.get $n) (i32.const 2))))
    (local.set $vend (i32.add (local.get $p) (i32.shl (i32.and (local.get $n) (i32.const -8)) (i32.const 2))))
    (block $done (loop $l
      (br_if $done (i32.ge_u (local.get $p) (local.get $vend)))
      (local.set $acc (i32x4.max_u (local.get $acc) (v128.and (v128.load (local.get $p)) (v128.const i32x4 0x7fffffff 0x7fffffff 0x7fffffff 0x7fffffff))))
      (local.set $acc2 (i32x4.max_u (local.get $acc2) (v128.and (v128.load offset=16 (local.get $p)) (v128.const i32x4 0x7fffffff 0x7fffffff 0x7fffffff 0x7fffffff))))
      (local.set $p (i32.add (local.get $p) (i32.const 32)))
      (br $l)))
    (local.set $acc (i32x4.max_u (local.get $acc) (local.get $acc2)))
    (local.set $acc (i32x4.max_u (local.get $acc) (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $acc) (local.get $acc))))
    (local.set $acc (i32x4.max_u (local.get $acc) (i8x16.shuffle 4 5 6 7 0 1 2 3 4 5 6 7 0 1 2 3 (local.get $acc) (local.get $acc))))
    (local.set $m (i32x4.extract_lane 0 (local.get $acc)))
    (block $d2 (loop $t
      (br_if $d2 (i32.ge_u (local.get $p) (local.get $end)))
      (local.set $x (i32.and (i32.load (local.get $p)) (i32.const 0x7fffffff)))
      (if (i32.gt_u (local.get $x) (local.get $m)) (then (local.set $m (local.get $x))))
      (local.set $p (i32.add (local.get $p) (i32.const 4)))
      (br $t)))
    (local.get $m))

  ;; int8-block encode of n floats at src, blocks of B: absmax f32 per block at sc, codes at dst.
  ;; Returns -1, or the first block holding a NaN/Inf.
  (func (export "i8_encode") (param $src i32) (param $n i32) (param $B i32) (param $sc i32) (param $dst i32) (result i32)
    (local $blk i32) (local $from i32) (local $len i32) (local $a i32) (local $m f64) (local $mv v128)
    (local $p i32) (local $q i32) (local $vend i32) (local $end i32)
    (local $v v128) (local $r0 v128) (local $r1 v128) (local $r2 v128) (local $r3 v128)
    (local $c v128) (local $k v128) (local $m4 v128) (local $w v128) (local $bad v128) (local $lim v128) (local $kb v128) (local $p0 i32) (local $q0 i32)
    (local.set $c (v128.const f64x2 127.5 127.5))
    (local.set $lim (v128.const f32x4 0.49993896484375 0.49993896484375 0.49993896484375 0.49993896484375))
    ;; bits of 1.5 * 2^23 + c is 0x4b400000 + c; codes are c - 127
    (local.set $kb (v128.const i32x4 0x4b40007f 0x4b40007f 0x4b40007f 0x4b40007f))
    (local.set $k (v128.const i32x4 127 127 127 127))
    (block $done (loop $blocks
      (br_if $done (i32.ge_u (local.get $from) (local.get $n)))
      (local.set $len (i32.sub (local.get $n) (local.get $from)))
      (if (i32.gt_u (local.get $len) (local.get $B)) (then (local.set $len (local.get $B))))
      (local.set $p (i32.add (local.get $src) (i32.shl (local.get $from) (i32.const 2))))
      (local.set $a (call $absmax (local.get $p) (local.get $len)))
      (if (i32.ge_u (local.get $a) (i32.const 0x7f800000)) (then (return (local.get $blk))))
      (i32.store (i32.add (local.get $sc) (i32.shl (local.get $blk) (i32.const 2))) (local.get $a))
      (local.set $q (i32.add (local.get $dst) (local.get $from)))
      (local.set $end (i32.add (local.get $q) (local.get $len)))
      (if (i32.eqz (local.get $a))
        (then (memory.fill (local.get $q) (i32.const 0) (local.get $len)))
        (else
          (local.set $m (f64.div (f64.const 127) (f64.promote_f32 (f32.reinterpret_i32 (local.get $a)))))
          (local.set $mv (f64x2.splat (local.get $m)))
          (local.set $vend (i32.add (local.get $q) (i32.and (local.get $len) (i32.const -16))))
          ;; Fast pass in f32: y = x * f32(m) + 127.5 is within 2.3e-5 of the f64 value, so where y
          ;; is at least 2^-14 from an integer both floor alike. floor(y) = round(y - 0.5), read from
          ;; the bits of (y - 0.5) + 1.5 * 2^23 (whose ulp is 1). A block with a lane nearer an
          ;; integer (or a scale too large for f32) runs the f64 pass below instead.
          (local.set $m4 (f32x4.splat (f32.demote_f64 (local.get $m))))
          (local.set $bad (v128.const i32x4 0 0 0 0))
          (local.set $p0 (local.get $p))
          (local.set $q0 (local.get $q))
          (if (f64.lt (local.get $m) (f64.const 3e38))
            (then (block $fd (loop $f
              (br_if $fd (i32.ge_u (local.get $q) (local.get $vend)))
            (local.set $w (f32x4.sub (f32x4.add (f32x4.mul (v128.load offset=0 (local.get $p)) (local.get $m4)) (v128.const f32x4 127.5 127.5 127.5 127.5)) (v128.const f32x4 0.5 0.5 0.5 0.5)))
            (local.set $r0 (f32x4.add (local.get $w) (v128.const f32x4 12582912 12582912 12582912 12582912)))
            (local.set $bad (v128.or (local.get $bad) (f32x4.gt (f32x4.abs (f32x4.sub (local.get $w) (f32x4.sub (local.get $r0) (v128.const f32x4 12582912 12582912 12582912 12582912)))) (local.get $lim))))
            (local.set $w (f32x4.sub (f32x4.add (f32x4.mul (v128.load offset=16 (local.get $p)) (local.get $m4)) (v128.const f32x4 127.5 127.5 127.5 127.5)) (v128.const f32x4 0.5 0.5 0.5 0.5)))
            (local.set $r1 (f32x4.add (local.get $w) (v128.const f32x4 12582912 12582912 12582912 12582912)))
            (local.set $bad (v128.or (local.get $bad) (f32x4.gt (f32x4.abs (f32x4.sub (local.get $w) (f32x4.sub (local.get $r1) (v128.const f32x4 12582912 12582912 12582912 12582912)))) (local.get $lim))))
            (local.set $w (f32x4.sub (f32x4.add (f32x4.mul (v128.load offset=32 (local.get $p)) (local.get $m4)) (v128.const f32x4 127.5 127.5 127.5 127.5)) (v128.const f32x4 0.5 0.5 0.5 0.5)))
            (local.set $r2 (f32x4.add (local.get $w) (v128.const f32x4 12582912 12582912 12582912 12582912)))
            (local.set $bad (v128.or (local.get $bad) (f32x4.gt (f32x4.abs (f32x4.sub (local.get $w) (f32x4.sub (local.get $r2) (v128.const f32x4 12582912 12582912 12582912 12582912)))) (local.get $lim))))
            (local.set $w (f32x4.sub (f32x4.add (f32x4.mul (v128.load offset=48 (local.get $p)) (local.get $m4)) (v128.const f32x4 127.5 127.5 127.5 127.5)) (v128.const f32x4 0.5 0.5 0.5 0.5)))
            (local.set $r3 (f32x4.add (local.get $w) (v128.const f32x4 12582912 12582912 12582912 12582912)))
            (local.set $bad (v128.or (local.get $bad) (f32x4.gt (f32x4.abs (f32x4.sub (local.get $w) (f32x4.sub (local.get $r3) (v128.const f32x4 12582912 12582912 12582912 12582912)))) (local.get $lim))))
              (v128.store (local.get $q) (i8x16.narrow_i16x8_s
                (i16x8.narrow_i32x4_s (i32x4.sub (local.get $r0) (local.get $kb)) (i32x4.sub (local.get $r1) (local.get $kb)))
                (i16x8.narrow_i32x4_s (i32x4.sub (local.get $r2) (local.get $kb)) (i32x4.sub (local.get $r3) (local.get $kb)))))
              (local.set $p (i32.add (local.get $p) (i32.const 64)))
              (local.set $q (i32.add (local.get $q) (i32.const 16)))
              (br $f))))
            (else (local.set $bad (v128.const i32x4 -1 -1 -1 -1))))
          (if (v128.any_true (local.get $bad)) (then
            (local.set $p (local.get $p0))
            (local.set $q (local.get $q0))))
          (block $vd (loop $v
            (br_if $vd (i32.ge_u (local.get $q) (local.get $vend)))
            (local.set $v (v128.load offset=0 (local.get $p)))
            (local.set $r0 (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
              (i32x4.trunc_sat_f64x2_s_zero (f64x2.add (f64x2.mul (f64x2.promote_low_f32x4 (local.get $v)) (local.get $mv)) (local.get $c)))
              (i32x4.trunc_sat_f64x2_s_zero (f64x2.add (f64x2.mul (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v))) (local.get $mv)) (local.get $c)))))
            (local.set $v (v128.load offset=16 (local.get $p)))
            (local.set $r1 (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
              (i32x4.trunc_sat_f64x2_s_zero (f64x2.add (f64x2.mul (f64x2.promote_low_f32x4 (local.get $v)) (local.get $mv)) (local.get $c)))
              (i32x4.trunc_sat_f64x2_s_zero (f64x2.add (f64x2.mul (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v))) (local.get $mv)) (local.get $c)))))
            (local.set $v (v128.load offset=32 (local.get $p)))
            (local.set $r2 (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
              (i32x4.trunc_sat_f64x2_s_zero (f64x2.add (f64x2.mul (f64x2.promote_low_f32x4 (local.get $v)) (local.get $mv)) (local.get $c)))
              (i32x4.trunc_sat_f64x2_s_zero (f64x2.add (f64x2.mul (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v))) (local.get $mv)) (local.get $c)))))
            (local.set $v (v128.load offset=48 (local.get $p)))
            (local.set $r3 (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
              (i32x4.trunc_sat_f64x2_s_zero (f64x2.add (f64x2.mul (f64x2.promote_low_f32x4 (local.get $v)) (local.get $mv)) (local.get $c)))
              (i32x4.trunc_sat_f64x2_s_zero (f64x2.add (f64x2.mul (f64x2.promote_low_f32x4 (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $v) (local.get $v))) (local.get $mv)) (local.get $c)))))
            ;; codes + 127 are 0..254: subtract before narrowing (which saturates at 127)
            (v128.store (local.get $q) (i8x16.narrow_i16x8_s
              (i16x8.narrow_i32x4_s (i32x4.sub (local.get $r0) (local.get $k)) (i32x4.sub (local.get $r1) (local.get $k)))
              (i16x8.narrow_i32x4_s (i32x4.sub (local.get $r2) (local.get $k)) (i32x4.sub (local.get $r3) (local.get $k)))))
            (local.set $p (i32.add (local.get $p) (i32.const 64)))
            (local.set $q (i32.add (local.get $q) (i32.const 16)))
            (br $v)))
          (block $td (loop $t
            (br_if $td (i32.ge_u (local.get $q) (local.get $end)))
            (i32.store8 (local.get $q) (i32.sub (i32.trunc_f64_s (f64.add (f64.mul (f64.promote_f32 (f32.load (local.get $p))) (local.get $m)) (f64.const 127.5))) (i32.const 127)))
            (local.set $p (i32.add (local.get $p) (i32.const 4)))
            (local.set $q (i32.add (local.get $q) (i32.const 1)))
            (br $t)))))
      (local.set $blk (i32.add (local.get $blk) (i32.const 1)))
      (local.set $from (i32.add (local.get $from) (local.get $len)))
      (br $blocks)))
    (i32.const -1))

  ;; int8-block decode of n codes at src with absmax f32 per block at sc, into f32 at dst.
  ;; Returns -1, or the first block with a bad scale or a -128 code.
  (func (export "i8_decode") (param $src i32) (param $n i32) (param $B i32) (param $sc i32) (param $dst i32) (result i32)
    (local $blk i32) (local $from i32) (local $len i32) (local $a f32) (local $s f64) (local $sv v128)
    (local $p i32) (local $q i32) (local $vend i32) (local $end i32) (local $v v128) (local $w v128) (local $bad v128) (local $c i32)
    (local $x v128) (local $r0 v128) (local $r1 v128)
    (block $done (loop $blocks
      (br_if $done (i32.ge_u (local.get $from) (local.get $n)))
      (local.set $len (i32.sub (local.get $n) (local.get $from)))
      (if (i32.gt_u (local.get $len) (local.get $B)) (then (local.set $len (local.get $B))))
      (local.set $a (f32.load (i32.add (local.get $sc) (i32.shl (local.get $blk) (i32.const 2)))))
      (if (i32.eqz (i32.and (f32.ge (local.get $a) (f32.const 0)) (f32.lt (local.get $a) (f32.const inf)))) (then (return (local.get $blk))))
      (local.set $s (f64.div (f64.promote_f32 (local.get $a)) (f64.const 127)))
      (local.set $sv (f64x2.splat (local.get $s)))
      (local.set $p (i32.add (local.get $src) (local.get $from)))
      (local.set $q (i32.add (local.get $dst) (i32.shl (local.get $from) (i32.const 2))))
      (local.set $end (i32.add (local.get $p) (local.get $len)))
      (local.set $vend (i32.add (local.get $p) (i32.and (local.get $len) (i32.const -16))))
      (local.set $bad (v128.const i32x4 0 0 0 0))
      (block $vd (loop $vl
        (br_if $vd (i32.ge_u (local.get $p) (local.get $vend)))
        (local.set $v (v128.load (local.get $p)))
        (local.set $bad (v128.or (local.get $bad) (i8x16.eq (local.get $v) (v128.const i8x16 -128 -128 -128 -128 -128 -128 -128 -128 -128 -128 -128 -128 -128 -128 -128 -128))))
        (local.set $w (i16x8.extend_low_i8x16_s (local.get $v)))
        (local.set $x (i32x4.extend_low_i16x8_s (local.get $w)))
        (local.set $r0 (f64x2.convert_low_i32x4_s (local.get $x)))
        (local.set $r1 (f64x2.convert_low_i32x4_s (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $x) (local.get $x))))
        (v128.store offset=0 (local.get $q) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
          (f32x4.demote_f64x2_zero (f64x2.mul (local.get $r0) (local.get $sv)))
          (f32x4.demote_f64x2_zero (f64x2.mul (local.get $r1) (local.get $sv)))))
        (local.set $x (i32x4.extend_high_i16x8_s (local.get $w)))
        (local.set $r0 (f64x2.convert_low_i32x4_s (local.get $x)))
        (local.set $r1 (f64x2.convert_low_i32x4_s (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $x) (local.get $x))))
        (v128.store offset=16 (local.get $q) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
          (f32x4.demote_f64x2_zero (f64x2.mul (local.get $r0) (local.get $sv)))
          (f32x4.demote_f64x2_zero (f64x2.mul (local.get $r1) (local.get $sv)))))
        (local.set $w (i16x8.extend_high_i8x16_s (local.get $v)))
        (local.set $x (i32x4.extend_low_i16x8_s (local.get $w)))
        (local.set $r0 (f64x2.convert_low_i32x4_s (local.get $x)))
        (local.set $r1 (f64x2.convert_low_i32x4_s (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $x) (local.get $x))))
        (v128.store offset=32 (local.get $q) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
          (f32x4.demote_f64x2_zero (f64x2.mul (local.get $r0) (local.get $sv)))
          (f32x4.demote_f64x2_zero (f64x2.mul (local.get $r1) (local.get $sv)))))
        (local.set $x (i32x4.extend_high_i16x8_s (local.get $w)))
        (local.set $r0 (f64x2.convert_low_i32x4_s (local.get $x)))
        (local.set $r1 (f64x2.convert_low_i32x4_s (i8x16.shuffle 8 9 10 11 12 13 14 15 0 1 2 3 4 5 6 7 (local.get $x) (local.get $x))))
        (v128.store offset=48 (local.get $q) (i8x16.shuffle 0 1 2 3 4 5 6 7 16 17 18 19 20 21 22 23
          (f32x4.demote_f64x2_zero (f64x2.mul (local.get $r0) (local.get $sv)))
          (f32x4.demote_f64x2_zero (f64x2.mul (local.get $r1) (local.get $sv)))))
        (local.set $p (i32.add (local.get $p) (i32.const 16)))
        (local.set $q (i32.add (local.get $q) (i32.const 64)))
        (br $vl)))
      (if (v128.any_true (local.get $bad)) (then (return (local.get $blk))))
      (block $td (loop $t
        (br_if $td (i32.ge_u (local.get $p) (local.get $end)))
        (local.set $c (i32.load8_s (local.get $p)))
        (if (i32.eq (local.get $c) (i32.const -128)) (then (return (local.get $blk))))
        (f32.store (local.get $q) (f32.demote_f64 (f64.mul (f64.convert_i32_s (local.get $c)) (local.get $s))))
        (local.set $p (i32.add (local.get $p) (i32.const 1)))
        (local.set $q (i32.add (local.get $q) (i32.const 4)))
        (br $t)))
      (local.set $blk (i32.add (local.get $blk) (i32.const 1)))
      (local.set $from (i32.add (local.get $from) (local.get $len)))
      (br $blocks)))
    (i32.const -1))

  ;; Lanes of 4 patterns at p needing the slow path (0 < a < T): appends base + lane to the u32 list
  ;; at list[cnt..]; returns the new count.
  (func $slow4 (param $p i32) (param $T i32) (param $base i32) (param $list i32) (param $cnt i32) (result i32)
    (local $i i32) (local $a i32)
    (block $d (loop $l
      (br_if $d (i32.ge_u (local.get $i) (i32.const 4)))
      (local.set $a (i32.and (i32.load (i32.add (local.get $p) (i32.shl (local.get $i) (i32.const 2)))) (i32.const 0x7fffffff)))
      (if (i32.and (i32.lt_s (local.get $a) (local.get $T)) (i32.ne (local.get $a) (i32.const 0))) (then
        (i32.store (i32.add (local.get $list) (i32.shl (local.get $cnt) (i32.const 2))) (i32.add (local.get $base) (local.get $i)))
        (local.set $cnt (i32.add (local.get $cnt) (i32.const 1)))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $l)))
    (local.get $cnt))

  ;; fp16/bf16 encode of n f32 at src (finite, checked before) into u16 at dst; K, T, shift, half as in
  ;; float.ts. Indices (from base) that need the slow path go to the u32 list; returns their count.
  (func (export "half_encode") (param $src i32) (param $n i32) (param $dst i32) (param $K i32) (param $T i32) (param $shift i32) (param $half i32) (param $base i32) (param $list i32) (result i32)
    (local $i i32) (local $vn i32) (local $cnt i32) (local $Kv v128) (local $Tv v128) (local $hv v128)
    (local $b0 v128) (local $b1 v128) (local $a i32) (local $s i32) (local $b i32) (local $sl v128)
    (local $av v128) (local $sv v128) (local $sign v128) (local $r0 v128) (local $r1 v128) (local $abs v128) (local $one v128)
    (local.set $abs (v128.const i32x4 0x7fffffff 0x7fffffff 0x7fffffff 0x7fffffff))
    (local.set $one (v128.const i32x4 1 1 1 1))
    (local.set $Kv (i32x4.splat (local.get $K)))
    (local.set $Tv (i32x4.splat (local.get $T)))
    (local.set $hv (i32x4.splat (local.get $half)))
    (local.set $vn (i32.and (local.get $n) (i32.const -8)))
    (block $vd (loop $vl
      (br_if $vd (i32.ge_u (local.get $i) (local.get $vn)))
      (local.set $b0 (v128.load (local.get $src)))
      (local.set $b1 (v128.load offset=16 (local.get $src)))
      (local.set $av (v128.and (local.get $b0) (local.get $abs)))
      (local.set $sv (i32x4.add (local.get $av) (local.get $Kv)))
      (local.set $sign (v128.and (i32x4.shr_s (local.get $b0) (i32.const 16)) (v128.const i32x4 0x8000 0x8000 0x8000 0x8000)))
      (local.set $r0 (v128.and (v128.const i32x4 0xffff 0xffff 0xffff 0xffff) (v128.bitselect
        (v128.or (local.get $sign) (i32x4.shr_s (i32x4.add (i32x4.add (local.get $sv) (local.get $hv))
          (v128.and (i32x4.shr_s (local.get $sv) (local.get $shift)) (local.get $one))) (local.get $shift)))
        (local.get $sign)
        (i32x4.ge_s (local.get $av) (local.get $Tv)))))
      (local.set $av (v128.and (local.get $b1) (local.get $abs)))
      (local.set $sv (i32x4.add (local.get $av) (local.get $Kv)))
      (local.set $sign (v128.and (i32x4.shr_s (local.get $b1) (i32.const 16)) (v128.const i32x4 0x8000 0x8000 0x8000 0x8000)))
      (local.set $r1 (v128.and (v128.const i32x4 0xffff 0xffff 0xffff 0xffff) (v128.bitselect
        (v128.or (local.get $sign) (i32x4.shr_s (i32x4.add (i32x4.add (local.get $sv) (local.get $hv))
          (v128.and (i32x4.shr_s (local.get $sv) (local.get $shift)) (local.get $one))) (local.get $shift)))
        (local.get $sign)
        (i32x4.ge_s (local.get $av) (local.get $Tv)))))
      ;; the low 16 bits, as a Uint16Array store keeps them (narrow_u alone would saturate)
      (v128.store (local.get $dst) (i16x8.narrow_i32x4_u (local.get $r0) (local.get $r1)))
      ;; slow lanes: 0 < a < T, i.e. a - 1 < T - 1 unsigned
      (local.set $sl (v128.or
        (i32x4.lt_u (i32x4.sub (v128.and (local.get $b0) (v128.const i32x4 0x7fffffff 0x7fffffff 0x7fffffff 0x7fffffff)) (v128.const i32x4 1 1 1 1)) (i32x4.sub (local.get $Tv) (v128.const i32x4 1 1 1 1)))
        (i32x4.lt_u (i32x4.sub (v128.and (local.get $b1) (v128.const i32x4 0x7fffffff 0x7fffffff 0x7fffffff 0x7fffffff)) (v128.const i32x4 1 1 1 1)) (i32x4.sub (local.get $Tv) (v128.const i32x4 1 1 1 1)))))
      (if (v128.any_true (local.get $sl)) (then
        (local.set $cnt (call $slow4 (local.get $src) (local.get $T) (i32.add (local.get $base) (local.get $i)) (local.get $list) (local.get $cnt)))
        (local.set $cnt (call $slow4 (i32.add (local.get $src) (i32.const 16)) (local.get $T) (i32.add (local.get $base) (i32.add (local.get $i) (i32.const 4))) (local.get $list) (local.get $cnt)))))
      (local.set $src (i32.add (local.get $src) (i32.const 32)))
      (local.set $dst (i32.add (local.get $dst) (i32.const 16)))
      (local.set $i (i32.add (local.get $i) (i32.const 8)))
      (br $vl)))
    (block $td (loop $t
      (br_if $td (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $b (i32.load (local.get $src)))
      (local.set $a (i32.and (local.get $b) (i32.const 0x7fffffff)))
      (local.set $s (i32.add (local.get $a) (local.get $K)))
      (if (i32.ge_s (local.get $a) (local.get $T))
        (then (i32.store16 (local.get $dst) (i32.or (i32.and (i32.shr_s (local.get $b) (i32.const 16)) (i32.const 0x8000))
          (i32.shr_s (i32.add (i32.add (local.get $s) (local.get $half)) (i32.and (i32.shr_s (local.get $s) (local.get $shift)) (i32.const 1))) (local.get $shift)))))
        (else
          (i32.store16 (local.get $dst) (i32.and (i32.shr_s (local.get $b) (i32.const 16)) (i32.const 0x8000)))
          (if (i32.ne (local.get $a) (i32.const 0)) (then
            (i32.store (i32.add (local.get $list) (i32.shl (local.get $cnt) (i32.const 2))) (i32.add (local.get $base) (local.get $i)))
            (local.set $cnt (i32.add (local.get $cnt) (i32.const 1)))))))
      (local.set $src (i32.add (local.get $src) (i32.const 4)))
      (local.set $dst (i32.add (local.get $dst) (i32.const 2)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $t)))
    (local.get $cnt))

  ;; fp16/bf16 decode of n u16 at src into f32 bits at dst. Indices (from base) of patterns 0 < m < Tm
  ;; go to the u32 list for the table path; returns their count, or -1 if a pattern exceeds maxBits.
  (func (export "half_decode") (param $src i32) (param $n i32) (param $dst i32) (param $maxBits i32) (param $Tm i32) (param $add i32) (param $shift i32) (param $base i32) (param $list i32) (result i32)
    (local $i i32) (local $vn i32) (local $cnt i32) (local $Tv v128) (local $Av v128) (local $Mv v128) (local $v v128) (local $lo v128) (local $hi v128)
    (local $bad v128) (local $m v128) (local $j i32) (local $x i32) (local $mm i32) (local $sign v128)
    (local.set $Tv (i32x4.splat (local.get $Tm)))
    (local.set $Av (i32x4.splat (local.get $add)))
    (local.set $Mv (i32x4.splat (local.get $maxBits)))
    (local.set $vn (i32.and (local.get $n) (i32.const -8)))
    (block $vd (loop $vl
      (br_if $vd (i32.ge_u (local.get $i) (local.get $vn)))
      (local.set $v (v128.load (local.get $src)))
      (local.set $lo (i32x4.extend_low_i16x8_u (local.get $v)))
      (local.set $hi (i32x4.extend_high_i16x8_u (local.get $v)))
      (local.set $m (v128.and (local.get $lo) (v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff)))
      (local.set $sign (i32x4.shl (v128.and (local.get $lo) (v128.const i32x4 0x8000 0x8000 0x8000 0x8000)) (i32.const 16)))
      (local.set $bad (v128.or (local.get $bad) (i32x4.gt_s (local.get $m) (local.get $Mv))))
      (v128.store offset=0 (local.get $dst) (v128.bitselect
        (v128.or (local.get $sign) (i32x4.add (i32x4.shl (local.get $m) (local.get $shift)) (local.get $Av)))
        (local.get $sign)
        (i32x4.ge_s (local.get $m) (local.get $Tv))))
      (local.set $m (v128.and (local.get $hi) (v128.const i32x4 0x7fff 0x7fff 0x7fff 0x7fff)))
      (local.set $sign (i32x4.shl (v128.and (local.get $hi) (v128.const i32x4 0x8000 0x8000 0x8000 0x8000)) (i32.const 16)))
      (local.set $bad (v128.or (local.get $bad) (i32x4.gt_s (local.get $m) (local.get $Mv))))
      (v128.store offset=16 (local.get $dst) (v128.bitselect
        (v128.or (local.get $sign) (i32x4.add (i32x4.shl (local.get $m) (local.get $shift)) (local.get $Av)))
        (local.get $sign)
        (i32x4.ge_s (local.get $m) (local.get $Tv))))
      (local.set $m (v128.and (local.get $v) (v128.const i16x8 0x7fff 0x7fff 0x7fff 0x7fff 0x7fff 0x7fff 0x7fff 0x7fff)))
      ;; slow lanes: 0 < m < Tm, i.e. m - 1 < Tm - 1 unsigned (16-bit lanes; Tm < 0x10000)
      (if (v128.any_true (i16x8.lt_u (i16x8.sub (local.get $m) (v128.const i16x8 1 1 1 1 1 1 1 1)) (i16x8.splat (i32.sub (local.get $Tm) (i32.const 1))))) (then
        (local.set $j (i32.const 0))
        (block $sd (loop $sl
          (br_if $sd (i32.ge_u (local.get $j) (i32.const 8)))
          (local.set $mm (i32.and (i32.load16_u (i32.add (local.get $src) (i32.shl (local.get $j) (i32.const 1)))) (i32.const 0x7fff)))
          (if (i32.and (i32.lt_s (local.get $mm) (local.get $Tm)) (i32.ne (local.get $mm) (i32.const 0))) (then
            (i32.store (i32.add (local.get $list) (i32.shl (local.get $cnt) (i32.const 2))) (i32.add (local.get $base) (i32.add (local.get $i) (local.get $j))))
            (local.set $cnt (i32.add (local.get $cnt) (i32.const 1)))))
          (local.set $j (i32.add (local.get $j) (i32.const 1)))
          (br $sl)))))
      (local.set $src (i32.add (local.get $src) (i32.const 16)))
      (local.set $dst (i32.add (local.get $dst) (i32.const 32)))
      (local.set $i (i32.add (local.get $i) (i32.const 8)))
      (br $vl)))
    (if (v128.any_true (local.get $bad)) (then (return (i32.const -1))))
    (block $td (loop $t
      (br_if $td (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $x (i32.load16_u (local.get $src)))
      (local.set $mm (i32.and (local.get $x) (i32.const 0x7fff)))
      (if (i32.gt_s (local.get $mm) (local.get $maxBits)) (then (return (i32.const -1))))
      (if (i32.ge_s (local.get $mm) (local.get $Tm))
        (then (i32.store (local.get $dst) (i32.or (i32.shl (i32.and (local.get $x) (i32.const 0x8000)) (i32.const 16))
          (i32.add (i32.shl (local.get $mm) (local.get $shift)) (local.get $add)))))
        (else
          (i32.store (local.get $dst) (i32.shl (i32.and (local.get $x) (i32.const 0x8000)) (i32.const 16)))
          (if (i32.ne (local.get $mm) (i32.const 0)) (then
            (i32.store (i32.add (local.get $list) (i32.shl (local.get $cnt) (i32.const 2))) (i32.add (local.get $base) (local.get $i)))
            (local.set $cnt (i32.add (local.get $cnt) (i32.const 1)))))))
      (local.set $src (i32.add (local.get $src) (i32.const 2)))
      (local.set $dst (i32.add (local.get $dst) (i32.const 4)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $t)))
    (local.get $cnt))

  ;; Top-k candidates: for each of n f32 at src with (bits & 0x7fffffff) >= L (NaN and Inf too when
  ;; L <= 0x7f800000), appends base + i to the u32 list at idx[cnt..] and its bits to bits[cnt..], at
  ;; most cap entries in all. Returns the new count, or -1 past cap.
  (func (export "topk_scan") (param $src i32) (param $n i32) (param $L i32) (param $base i32) (param $idx i32) (param $bits i32) (param $cnt i32) (param $cap i32) (result i32)
    (local $i i32) (local $vn i32) (local $Lv v128) (local $mask i32) (local $lane i32) (local $at i32) (local $b i32)
    ;; a >= L  <=>  a > L - 1 (signed: a and L - 1 are in -1..2^31-1)
    (local.set $Lv (i32x4.splat (i32.sub (local.get $L) (i32.const 1))))
    (local.set $vn (i32.and (local.get $n) (i32.const -4)))
    (block $vd (loop $vl
      (br_if $vd (i32.ge_u (local.get $i) (local.get $vn)))
      (local.set $mask (i32x4.bitmask (i32x4.gt_s
        (v128.and (v128.load (local.get $src)) (v128.const i32x4 0x7fffffff 0x7fffffff 0x7fffffff 0x7fffffff)) (local.get $Lv))))
      ;; the set lanes, lowest first (ascending indices)
      (block $md (loop $ml
        (br_if $md (i32.eqz (local.get $mask)))
        (if (i32.ge_u (local.get $cnt) (local.get $cap)) (then (return (i32.const -1))))
        (local.set $lane (i32.ctz (local.get $mask)))
        (local.set $at (i32.shl (local.get $cnt) (i32.const 2)))
        (i32.store (i32.add (local.get $idx) (local.get $at)) (i32.add (i32.add (local.get $base) (local.get $i)) (local.get $lane)))
        (i32.store (i32.add (local.get $bits) (local.get $at)) (i32.load (i32.add (local.get $src) (i32.shl (local.get $lane) (i32.const 2)))))
        (local.set $cnt (i32.add (local.get $cnt) (i32.const 1)))
        (local.set $mask (i32.and (local.get $mask) (i32.sub (local.get $mask) (i32.const 1))))
        (br $ml)))
      (local.set $src (i32.add (local.get $src) (i32.const 16)))
      (local.set $i (i32.add (local.get $i) (i32.const 4)))
      (br $vl)))
    (block $td (loop $t
      (br_if $td (i32.ge_u (local.get $i) (local.get $n)))
      (local.set $b (i32.load (local.get $src)))
      (if (i32.ge_u (i32.and (local.get $b) (i32.const 0x7fffffff)) (local.get $L)) (then
        (if (i32.ge_u (local.get $cnt) (local.get $cap)) (then (return (i32.const -1))))
        (local.set $at (i32.shl (local.get $cnt) (i32.const 2)))
        (i32.store (i32.add (local.get $idx) (local.get $at)) (i32.add (local.get $base) (local.get $i)))
        (i32.store (i32.add (local.get $bits) (local.get $at)) (local.get $b))
        (local.set $cnt (i32.add (local.get $cnt) (i32.const 1)))))
      (local.set $src (i32.add (local.get $src) (i32.const 4)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $t)))
    (local.get $cnt))
)

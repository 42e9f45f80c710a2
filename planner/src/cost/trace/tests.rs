//! The trace's own tests: the clock, liveness, repetition and replay.

use super::*;
use crate::catalog::{Catalog, OpKind};

fn hw() -> Hw<'static> {
    let c = Catalog::get();
    Hw {
        gpu: c.gpu("h200").unwrap(),
        rt: c.runtime("diffusers").unwrap(),
    }
}

#[test]
fn first_calls_are_charged_once_per_kind_and_not_repeated() {
    let c = Catalog::get();
    // A host running its ops itself (klein's CPU backend: no separate dispatch), with and
    // without first-call costs.
    let mut base = c.runtime("diffusers").unwrap().clone();
    base.serial_ops = true;
    base.cpu_dispatch_us = 0.0;
    let mut rt = base.clone();
    rt.op_cold_us.norm = 20.0;
    rt.op_cold_us.gemm = 30.0;
    let gpu = c.gpu("h200").unwrap();
    let h = Hw { gpu, rt: &rt };
    let hw = || Hw { gpu, rt: &base };
    let layer = |t: &mut Trace| {
        t.first_call(OpKind::Norm);
        t.kernel(0.0, 0.0, 1e3);
        t.first_call(OpKind::Gemm);
        t.kernel(0.0, 0.0, 1e3);
        t.first_call(OpKind::Norm);
    };
    let mut warm = Trace::new(hw());
    let m = warm.mark();
    layer(&mut warm);
    warm.repeat_since(m, 3);
    let mut cold = Trace::new(h);
    let m = cold.mark();
    layer(&mut cold);
    cold.repeat_since(m, 3);
    let extra = cold.elapsed_s() - warm.elapsed_s();
    assert!((extra - 50e-6).abs() < 1e-12, "{extra}");
    // A new stage pays again.
    let mut next = Trace::new(h);
    layer(&mut next);
    let mut plain = Trace::new(hw());
    layer(&mut plain);
    assert!((next.elapsed_s() - plain.elapsed_s() - 50e-6).abs() < 1e-12);
}

#[test]
fn peak_is_the_largest_live_sum() {
    let mut t = Trace::new(hw());
    let a = t.alloc(10);
    let b = t.alloc(20);
    t.free(a);
    let c = t.alloc(5);
    assert_eq!(t.peak_bytes(), 30);
    t.free_all([b, c]);
    assert_eq!(t.live_bytes(), 0);
}

#[test]
fn tensor_ops_in_closed_form_match_one_at_a_time() {
    let h = hw();
    let host = h.rt.tensor_op_dispatch_us * 1e-6;
    for (gpu_s, ahead) in [(host * 0.3, 0.0), (host * 3.0, 0.0), (host * 0.3, 0.01)] {
        let mut a = Trace::new(h);
        a.kernel(0.0, 0.0, ahead * h.gpu.hbm_bytes_per_s());
        let mut b = Trace::new(h);
        b.kernel(0.0, 0.0, ahead * h.gpu.hbm_bytes_per_s());
        a.tensor_ops(1000, gpu_s);
        for _ in 0..1000 {
            b.tensor_ops(1, gpu_s);
        }
        assert!(
            (a.elapsed_s() - b.elapsed_s()).abs() < 1e-9,
            "{gpu_s} {ahead}"
        );
    }
}

#[test]
fn collectives_block_queue_or_overlap_as_placed() {
    let h = hw();
    let c = |overlap| Collective {
        kind: CollectiveKind::AllToAll,
        ranks: 4,
        bytes: 4e9,
        latency_s: 1e-3,
        bytes_per_s: 1e11,
        overlap,
    };
    // 3 GB on the wire at 100 GB/s plus 1 ms.
    assert!((c(Overlap::Queued).seconds() - 0.031).abs() < 1e-12);
    let mut serial = Trace::new(h);
    serial.kernel(1e15, 1e15, 0.0);
    serial.collective(c(Overlap::Queued));
    assert!((serial.elapsed_s() - 1.031).abs() < 1e-3);
    let mut side = Trace::new(h);
    side.collective(c(Overlap::Stream));
    side.kernel(1e15, 1e15, 0.0);
    side.wait_comm();
    assert!(
        (side.elapsed_s() - 1.0).abs() < 1e-3,
        "{}",
        side.elapsed_s()
    );
    for t in [&serial, &side] {
        assert!((t.summary().comm_s - 0.031).abs() < 1e-12);
    }
    let one_rank = Collective {
        ranks: 1,
        ..c(Overlap::Queued)
    };
    assert_eq!(one_rank.seconds(), 0.0);
}

#[test]
fn a_side_stream_bounds_repeated_blocks_when_it_is_the_slower() {
    let h = hw();
    let mut t = Trace::new(h);
    for _ in 0..2 {
        let m = t.mark();
        // 0.1 s of compute behind a 0.3 s prefetch of the next block's weights.
        t.host_copy(
            (0.3 * h.gpu.host_link_gbps * 1e9 * h.rt.pinned_copy_efficiency) as u64,
            true,
            Overlap::Stream,
        );
        t.kernel(1e14, 1e15, 0.0);
        t.wait_copy();
        if t.summary().ops > 2 {
            t.repeat_since(m, 8);
        }
    }
    assert!((t.elapsed_s() - 3.0).abs() < 0.01, "{}", t.elapsed_s());
    assert!((t.summary().host_copy_s - 3.0).abs() < 0.01);
}

#[test]
fn held_buffers_are_live_and_counted() {
    let mut t = Trace::new(hw());
    let a = t.hold(100);
    let b = t.alloc(50);
    t.free(b);
    assert_eq!((t.peak_bytes(), t.summary().held_bytes), (150, 100));
    t.release(a);
    assert_eq!(t.summary().held_bytes, 0);
}

#[test]
fn a_full_launch_queue_makes_the_host_wait_for_the_backlog() {
    let h = hw();
    let host = h.rt.tensor_op_dispatch_us * 1e-6;
    let n = 3 * LAUNCH_QUEUE_DEPTH;
    // One second of GPU work queued, then a loop of tiny ops: the first DEPTH hide under
    // the backlog, the host waits, and the remaining 2 * DEPTH run at the host's pace.
    let mut t = Trace::new(h);
    t.kernel(1e15, 1e15, 0.0);
    t.tensor_ops(n, host * 0.1);
    let expected = h.rt.cpu_dispatch_us * 1e-6 + 1.0 + (n - LAUNCH_QUEUE_DEPTH) as f64 * host;
    assert!(
        (t.elapsed_s() - expected).abs() < 2.0 * host,
        "{} vs {expected}",
        t.elapsed_s()
    );
    // Without a backlog the loop is host-bound from the start.
    let mut t = Trace::new(h);
    t.tensor_ops(n, host * 0.1);
    assert!((t.elapsed_s() - n as f64 * host).abs() < 2.0 * host);
}

#[test]
fn views_cost_the_host_only_and_launch_nothing() {
    let c = Catalog::get();
    let mut rt = c.runtime("diffusers").unwrap().clone();
    rt.view_dispatch_us = 4.0;
    let h = Hw {
        gpu: c.gpu("h200").unwrap(),
        rt: &rt,
    };
    // Behind a second of queued GPU work, views hide under it and add no op.
    let mut t = Trace::new(h);
    t.kernel(1e15, 1e15, 0.0);
    t.host_ops(1000);
    assert!((t.elapsed_s() - 1.0).abs() < 1e-3);
    assert_eq!(t.summary().ops, 1);
    // Alone, 1000 views take 1000 x 4 us of host time.
    let mut t = Trace::new(h);
    t.host_ops(1000);
    assert!((t.elapsed_s() - 4e-3).abs() < 1e-9, "{}", t.elapsed_s());
    // At the diffusers profile's 0 they are free.
    let mut t = Trace::new(hw());
    t.host_ops(1000);
    assert_eq!(t.elapsed_s(), 0.0);
}

#[test]
fn tiny_ops_are_bound_by_the_host_and_big_ops_by_the_gpu() {
    let h = hw();
    let mut t = Trace::new(h);
    for _ in 0..100 {
        t.kernel(1.0, 1e15, 1.0);
    }
    let host = 100.0 * h.rt.cpu_dispatch_us * 1e-6;
    assert!(
        (t.elapsed_s() - host).abs() / host < 0.5,
        "{} vs {host}",
        t.elapsed_s()
    );
    let mut t = Trace::new(h);
    t.kernel(1e15, 1e15, 0.0);
    assert!((t.elapsed_s() - 1.0).abs() < 1e-3);
}

/// A trace of every kind of event: kernels, transfers on each stream, joins, liveness, first
/// calls, repeated layers and repeated steps.
fn busy(t: &mut Trace) {
    let start = t.mark();
    let h = t.hold(64);
    t.first_call(OpKind::Gemm);
    t.collective(Collective {
        kind: CollectiveKind::AllGather,
        ranks: 2,
        bytes: 1e8,
        latency_s: 1e-5,
        bytes_per_s: 1e11,
        overlap: Overlap::Stream,
    });
    t.host_copy(1 << 20, true, Overlap::Stream);
    let m = t.mark();
    let a = t.alloc(100);
    t.kernel_costed(1e12, 5e14, 1e9, 0.5, 1.5, 2.0);
    t.tensor_ops(10, 1e-6);
    t.host_ops(3);
    t.host(1e-5);
    t.free(a);
    t.repeat_since(m, 5);
    let blocks = t.span_since(m);
    t.wait_comm();
    t.wait_copy();
    t.host_copy(1 << 22, false, Overlap::Blocking);
    t.release(h);
    let step = t.span_since(start);
    t.repeat_span(&step, 2.0);
    t.repeat_span(&step.plus(blocks.scaled(-0.5)), 1.5);
    t.transient(1000);
    t.launch(1e-4);
    t.blocking(1e-4);
    t.overlapped(1.0);
}

#[test]
fn a_replayed_trace_has_the_recorded_figures() {
    let mut t = Trace::recording(hw());
    busy(&mut t);
    let r = Trace::replay(hw(), t.events());
    assert_eq!(r.elapsed_s(), t.elapsed_s());
    assert_eq!(r.summary(), t.summary());
    assert_eq!(r.peak_bytes(), t.peak_bytes());
    assert!(t.summary().exposed_copy_s > 0.0);
    // A trace that does not record keeps nothing and runs the same clock.
    let mut plain = Trace::new(hw());
    busy(&mut plain);
    assert!(plain.events().is_empty());
    assert_eq!(plain.elapsed_s(), t.elapsed_s());
}

#[test]
fn repeated_steps_add_their_span_behind_a_synchronisation() {
    let h = hw();
    let mut t = Trace::new(h);
    let m = t.mark();
    t.kernel(1e14, 1e15, 0.0); // 0.1 s
    let blocks = t.span_since(m);
    t.kernel(1e14, 1e15, 0.0);
    let step = t.span_since(m);
    let one = t.elapsed_s();
    t.repeat_span(&step, 3.0);
    assert!((t.elapsed_s() - 4.0 * one).abs() < 1e-12);
    assert!((t.summary().flops - 8e14).abs() < 1.0);
    // Half a step's blocks left out on two skipped steps.
    t.repeat_span(&step.plus(blocks.clone().scaled(-0.5)), 2.0);
    let expected = 4.0 * one + 2.0 * (one - 0.5 * blocks.seconds());
    assert!((t.elapsed_s() - expected).abs() < 1e-12);
    assert!((t.summary().flops - 8e14 - 2.0 * 1.5e14).abs() < 1.0);
}

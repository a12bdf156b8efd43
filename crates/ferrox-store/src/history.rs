//! A linearizability checker for one register (the Wing & Gong search with Lowe's
//! memoization): is there an order of the operations, consistent with their real-time
//! order, in which every read returns the latest write? Written here because the Rust
//! crates for it are whole model checkers; this is the one function we need.

use std::collections::HashSet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OpKind {
    Write(u64),
    /// What the read returned (`None`: the register was empty).
    Read(Option<u64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Op {
    pub client: usize,
    pub kind: OpKind,
    /// Invocation time (any monotonic unit).
    pub call: u64,
    /// Completion time; `None` when the outcome is unknown (a write that timed out may
    /// or may not have happened: it may take effect any time after its call, or never).
    pub ret: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub linearizable: bool,
    /// The largest number of operations placed in a consistent order.
    pub longest_prefix: usize,
    pub states_explored: usize,
}

/// Checks `ops` against a register that starts as `initial`. Failed reads must be
/// left out by the caller (they observed nothing).
pub fn check_register(ops: &[Op], initial: Option<u64>) -> Verdict {
    let mut ops: Vec<Op> = ops.to_vec();
    ops.sort_by_key(|o| o.call);
    let n = ops.len();
    let words = n.div_ceil(64);
    let required = ops.iter().filter(|o| o.ret.is_some()).count();
    let mut seen: HashSet<(Vec<u64>, Option<u64>)> = HashSet::new();
    // Depth-first over (done set, register value, number of completed ops placed).
    let mut stack: Vec<(Vec<u64>, Option<u64>, usize, usize)> =
        vec![(vec![0; words], initial, 0, 0)];
    let mut longest = 0;
    while let Some((done, value, placed, placed_required)) = stack.pop() {
        longest = longest.max(placed);
        if placed_required == required {
            return Verdict {
                linearizable: true,
                longest_prefix: placed,
                states_explored: seen.len(),
            };
        }
        if !seen.insert((done.clone(), value)) {
            continue;
        }
        let is_done = |i: usize| done[i / 64] & (1 << (i % 64)) != 0;
        // No pending op may be placed after one that returned before it was called.
        let horizon = (0..n)
            .filter(|&i| !is_done(i))
            .filter_map(|i| ops[i].ret)
            .min()
            .unwrap_or(u64::MAX);
        for i in 0..n {
            if ops[i].call > horizon {
                break;
            }
            if is_done(i) {
                continue;
            }
            let next = match ops[i].kind {
                OpKind::Write(v) => Some(v),
                OpKind::Read(r) if r == value => value,
                OpKind::Read(_) => continue,
            };
            let mut d = done.clone();
            d[i / 64] |= 1 << (i % 64);
            let req = placed_required + usize::from(ops[i].ret.is_some());
            stack.push((d, next, placed + 1, req));
        }
    }
    Verdict {
        linearizable: false,
        longest_prefix: longest,
        states_explored: seen.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(client: usize, kind: OpKind, call: u64, ret: Option<u64>) -> Op {
        Op {
            client,
            kind,
            call,
            ret,
        }
    }

    #[test]
    fn concurrent_write_may_be_seen_or_not() {
        // w(1) overlaps both reads: one sees the old value, the later one the new.
        let h = [
            op(0, OpKind::Write(1), 0, Some(10)),
            op(1, OpKind::Read(None), 1, Some(2)),
            op(2, OpKind::Read(Some(1)), 3, Some(4)),
        ];
        assert!(check_register(&h, None).linearizable);
    }

    #[test]
    fn a_stale_read_after_a_completed_write_is_caught() {
        let h = [
            op(0, OpKind::Write(1), 0, Some(1)),
            op(0, OpKind::Write(2), 2, Some(3)),
            op(1, OpKind::Read(Some(1)), 4, Some(5)),
        ];
        let v = check_register(&h, None);
        assert!(!v.linearizable, "{v:?}");
    }

    #[test]
    fn reads_cannot_go_back_in_time() {
        // Two sequential reads see 2 then 1 while both writes overlap them: impossible.
        let h = [
            op(0, OpKind::Write(1), 0, Some(100)),
            op(1, OpKind::Write(2), 0, Some(100)),
            op(2, OpKind::Read(Some(2)), 10, Some(20)),
            op(2, OpKind::Read(Some(1)), 30, Some(40)),
            op(3, OpKind::Read(Some(2)), 50, Some(60)),
        ];
        assert!(!check_register(&h, None).linearizable);
    }

    #[test]
    fn a_write_with_unknown_outcome_may_land_late_or_never() {
        let late = [
            op(0, OpKind::Write(1), 0, None),
            op(1, OpKind::Read(None), 5, Some(6)),
            op(1, OpKind::Read(Some(1)), 50, Some(60)),
        ];
        assert!(check_register(&late, None).linearizable);
        let never = [
            op(0, OpKind::Write(1), 0, None),
            op(1, OpKind::Read(None), 50, Some(60)),
        ];
        assert!(check_register(&never, None).linearizable);
        // A value nobody wrote is never explained.
        let phantom = [op(1, OpKind::Read(Some(7)), 5, Some(6))];
        assert!(!check_register(&phantom, None).linearizable);
    }
}

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
///
/// Completed operations are sorted by call time; a search state is "every completed op
/// before `k` is placed, plus these few after it" (at most about one per client), so
/// states stay small on long histories. Writes with an unknown outcome that no read
/// observed are dropped first: placing them "never" is always possible.
pub fn check_register(ops: &[Op], initial: Option<u64>) -> Verdict {
    let observed: HashSet<u64> = ops
        .iter()
        .filter_map(|o| match o.kind {
            OpKind::Read(Some(v)) => Some(v),
            _ => None,
        })
        .collect();
    let mut known: Vec<Op> = ops.iter().filter(|o| o.ret.is_some()).copied().collect();
    known.sort_by_key(|o| o.call);
    let mut unknown: Vec<Op> = ops
        .iter()
        .filter(|o| o.ret.is_none())
        .filter(|o| matches!(o.kind, OpKind::Write(v) if observed.contains(&v)))
        .copied()
        .collect();
    unknown.sort_by_key(|o| o.call);
    let n = known.len();
    let ret = |i: usize| known[i].ret.unwrap_or(u64::MAX);

    #[derive(Clone, PartialEq, Eq, Hash)]
    struct State {
        k: usize,
        extra: Vec<usize>,
        unknown_done: Vec<bool>,
        value: Option<u64>,
    }
    let mut seen: HashSet<State> = HashSet::new();
    let mut stack = vec![State {
        k: 0,
        extra: Vec::new(),
        unknown_done: vec![false; unknown.len()],
        value: initial,
    }];
    let mut longest = 0;
    while let Some(st) = stack.pop() {
        longest = longest.max(st.k + st.extra.len());
        if st.k == n {
            return Verdict {
                linearizable: true,
                longest_prefix: n,
                states_explored: seen.len(),
            };
        }
        if !seen.insert(st.clone()) {
            continue;
        }
        // No pending op may be placed after one that returned before it was called.
        let mut horizon = u64::MAX;
        let mut i = st.k;
        while i < n && known[i].call <= horizon {
            if !st.extra.contains(&i) {
                horizon = horizon.min(ret(i));
            }
            i += 1;
        }
        let apply = |kind: OpKind| -> Option<Option<u64>> {
            match kind {
                OpKind::Write(v) => Some(Some(v)),
                OpKind::Read(r) if r == st.value => Some(st.value),
                OpKind::Read(_) => None,
            }
        };
        for (j, op) in unknown.iter().enumerate() {
            if op.call > horizon {
                break;
            }
            if !st.unknown_done[j] {
                if let Some(value) = apply(op.kind) {
                    let mut next = st.clone();
                    next.value = value;
                    next.unknown_done[j] = true;
                    stack.push(next);
                }
            }
        }
        // Depth first: the earliest-called op is tried first (pushed last), writes of
        // unknown outcome only when nothing else fits.
        let mut candidates = Vec::new();
        let mut i = st.k;
        while i < n && known[i].call <= horizon {
            if !st.extra.contains(&i) {
                candidates.push(i);
            }
            i += 1;
        }
        for &i in candidates.iter().rev() {
            if let Some(value) = apply(known[i].kind) {
                let mut next = st.clone();
                next.value = value;
                next.extra.push(i);
                next.extra.sort_unstable();
                while next.extra.first() == Some(&next.k) {
                    next.extra.remove(0);
                    next.k += 1;
                }
                stack.push(next);
            }
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
    fn long_sequential_histories_check_quickly() {
        let mut h = Vec::new();
        for i in 0..50_000u64 {
            let t = i * 10;
            h.push(if i % 2 == 0 {
                op(0, OpKind::Write(i), t, Some(t + 5))
            } else {
                op(1, OpKind::Read(Some(i - 1)), t, Some(t + 5))
            });
        }
        let v = check_register(&h, None);
        assert!(v.linearizable && v.states_explored <= 50_001, "{v:?}");
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

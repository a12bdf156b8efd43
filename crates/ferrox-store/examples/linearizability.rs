//! Linearizability check of the store: concurrent clients write unique values to one
//! register and read it back linearizably, through random nodes of a three-node cluster
//! (real openraft + SQLite, in-memory network), while a nemesis kills and restarts nodes
//! and cuts them off. The recorded history is then checked (`ferrox_store::history`).
//!
//! `cargo run --release -p ferrox-store --example linearizability -- [seconds] [clients] [seed] [local]`
//!
//! With `local`, reads use the node's local copy instead of a linearizable read: the
//! checker should then find stale reads (it is how we know it can fail).

use ferrox_store::history::{check_register, Op, OpKind};
use ferrox_store::testing::{join, MemoryNet};
use ferrox_store::{Expect, StoreError};
use rand::{Rng, SeedableRng};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const REGISTER: &str = "register.cfg";
const NODES: [&str; 3] = ["a", "b", "c"];

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let seconds = args.first().copied().unwrap_or(60);
    let clients = args.get(1).copied().unwrap_or(6) as usize;
    let seed = args.get(2).copied().unwrap_or(1);
    let local_reads = std::env::args().any(|a| a == "local");
    let dir = tempfile::tempdir().expect("tempdir");
    let net = Arc::new(MemoryNet::default());
    let a = net.start(dir.path(), "a").await;
    a.create_cluster("lin").await.expect("create");
    let b = net.start(dir.path(), "b").await;
    join(&a, &b).await;
    let c = net.start(dir.path(), "c").await;
    join(&a, &c).await;
    // The stores stay alive through `net` (weak) and this list (strong), replaced on restart.
    let live = Arc::new(Mutex::new(vec![a, b, c]));
    let epoch = Instant::now();
    let now = move || epoch.elapsed().as_micros() as u64;
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let history = Arc::new(Mutex::new(Vec::<Op>::new()));
    let failures = Arc::new(Mutex::new((0usize, 0usize, 0usize)));

    let mut tasks = Vec::new();
    for client in 0..clients {
        let net = Arc::clone(&net);
        let history = Arc::clone(&history);
        let failures = Arc::clone(&failures);
        tasks.push(tokio::spawn(async move {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed * 1000 + client as u64);
            let mut seq = 0u64;
            while Instant::now() < deadline {
                let node = NODES[rng.gen_range(0..NODES.len())];
                let Some(store) = net.node(node) else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let call = now();
                if rng.gen_bool(0.5) {
                    seq += 1;
                    let value = client as u64 * 1_000_000 + seq;
                    let ret = match store.put(REGISTER, &value.to_string(), Expect::Any).await {
                        Ok(_) => Some(now()),
                        // Refused before proposing: it did not happen.
                        Err(StoreError::NoQuorum(_)) => {
                            failures.lock().unwrap().0 += 1;
                            continue;
                        }
                        Err(_) => {
                            failures.lock().unwrap().1 += 1;
                            None
                        }
                    };
                    history.lock().unwrap().push(Op {
                        client,
                        kind: OpKind::Write(value),
                        call,
                        ret,
                    });
                } else {
                    let read = if local_reads {
                        Ok(store.get(REGISTER))
                    } else {
                        store.get_linearizable(REGISTER).await
                    };
                    match read {
                        Ok(entry) => {
                            let value = entry.and_then(|e| e.data.parse().ok());
                            history.lock().unwrap().push(Op {
                                client,
                                kind: OpKind::Read(value),
                                call,
                                ret: Some(now()),
                            });
                        }
                        Err(_) => failures.lock().unwrap().2 += 1,
                    }
                }
            }
        }));
    }

    // The nemesis: one fault at a time, then a pause to recover.
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut faults = Vec::new();
    while Instant::now() + Duration::from_secs(8) < deadline {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let victim = NODES[rng.gen_range(0..NODES.len())];
        if rng.gen_bool(0.5) {
            faults.push(format!("kill {victim}"));
            let store = net.node(victim).expect("victim");
            net.remove(victim);
            store.shutdown().await;
            live.lock().unwrap().retain(|s| s.member().name != victim);
            drop(store);
            tokio::time::sleep(Duration::from_secs(2)).await;
            let store = net.start(dir.path(), victim).await;
            live.lock().unwrap().push(store);
        } else {
            faults.push(format!("isolate {victim}"));
            net.isolate(victim, true);
            tokio::time::sleep(Duration::from_secs(3)).await;
            net.heal();
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    for t in tasks {
        let _ = t.await;
    }
    let ops = history.lock().unwrap().clone();
    let (refused_writes, uncertain_writes, failed_reads) = *failures.lock().unwrap();
    let writes = ops
        .iter()
        .filter(|o| matches!(o.kind, OpKind::Write(_)))
        .count();
    println!(
        "{} operations in {seconds} s, {clients} clients, seed {seed}: {writes} writes ({uncertain_writes} with unknown outcome), {} reads; refused (not recorded): {refused_writes} writes, {failed_reads} reads",
        ops.len(),
        ops.len() - writes,
    );
    println!("faults: {}", faults.join(", "));
    let started = Instant::now();
    let verdict = check_register(&ops, None);
    println!(
        "checked in {:.2} s, {} states explored: {}",
        started.elapsed().as_secs_f64(),
        verdict.states_explored,
        if verdict.linearizable {
            "LINEARIZABLE".to_string()
        } else {
            format!(
                "NOT LINEARIZABLE (longest consistent prefix {} of {})",
                verdict.longest_prefix,
                ops.len()
            )
        }
    );
    let stores: Vec<_> = live.lock().unwrap().clone();
    for s in &stores {
        s.shutdown().await;
    }
    if !verdict.linearizable {
        std::process::exit(1);
    }
}

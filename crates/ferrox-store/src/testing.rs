//! An in-memory network for stores in one process, with nodes that can be cut off:
//! for the store's own tests and its benchmarks (linearizability, commit latency).
//! Nothing in the daemon uses it.

use crate::{Member, RpcFuture, Store, StoreOptions, Transport, TransportError};
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

#[derive(Default)]
pub struct MemoryNet {
    nodes: Mutex<HashMap<String, Weak<Store>>>,
    /// Nodes cut off from everyone.
    isolated: Mutex<HashSet<String>>,
}

struct Link {
    net: Arc<MemoryNet>,
    from: String,
}

impl Transport for Link {
    fn call(&self, target: &Member, rpc: &'static str, body: Vec<u8>) -> RpcFuture {
        let net = Arc::clone(&self.net);
        let from = self.from.clone();
        let to = target.address.clone();
        Box::pin(async move {
            let cut = {
                let iso = net.isolated.lock().unwrap_or_else(|p| p.into_inner());
                iso.contains(&from) || iso.contains(&to)
            };
            let store = net.node(&to);
            match store {
                Some(s) if !cut => Ok(s.serve_rpc(rpc, &body).await),
                _ => {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    Err(TransportError::NotSent(format!("{to} unreachable")))
                }
            }
        })
    }
}

pub fn member(name: &str) -> Member {
    Member {
        name: name.into(),
        address: name.into(),
        fingerprint: String::new(),
    }
}

impl MemoryNet {
    pub fn node(&self, name: &str) -> Option<Arc<Store>> {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(name)
            .and_then(Weak::upgrade)
    }

    /// Opens (or reopens) node `name`'s store below `dir` and puts it on the network.
    pub async fn start(self: &Arc<Self>, dir: &Path, name: &str) -> Arc<Store> {
        let mut opts = StoreOptions::new(&dir.join(name), member(name));
        opts.mirror = Some(dir.join(name).join("etc"));
        opts.write_timeout = Duration::from_secs(3);
        let link = Arc::new(Link {
            net: Arc::clone(self),
            from: name.into(),
        });
        let store = Arc::new(Store::open(opts, link).await.expect("open store"));
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(name.into(), Arc::downgrade(&store));
        store
    }

    /// Takes a node off the network (a crash, when followed by `Store::shutdown`).
    pub fn remove(&self, name: &str) {
        self.nodes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(name);
    }

    pub fn isolate(&self, name: &str, cut: bool) {
        let mut iso = self.isolated.lock().unwrap_or_else(|p| p.into_inner());
        if cut {
            iso.insert(name.to_string());
        } else {
            iso.remove(name);
        }
    }

    pub fn heal(&self) {
        self.isolated
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }
}

/// Admits `b` through `a` and waits until it is a voter.
pub async fn join(a: &Store, b: &Store) {
    let grant = a.add_member(b.member().clone()).await.expect("grant");
    b.join(&grant, Duration::from_secs(20)).await.expect("join");
}

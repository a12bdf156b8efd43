//! The node's side of storages beyond guest disks: files that come into a storage from
//! outside (an ISO image downloaded from a URL or uploaded by a client).

pub mod files;

//! Redis-facing storage: key templates, a safe wrapper over the key API, and the keyspace
//! implementation of the core's store trait.

pub mod access;
pub mod installation_scan;
pub mod keys;
pub mod keyspace;
pub mod redis_key;

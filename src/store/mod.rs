//! Redis-facing storage: key templates, a safe wrapper over the key API, and the keyspace
//! implementation of the core's store traits, and the in-memory indexes kept in front of it.

pub mod access;
pub mod indexes;
pub mod installation_scan;
pub mod keys;
pub mod keyspace;
pub mod redis_key;

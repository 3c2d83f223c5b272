//! Redis-facing storage: key templates and their roles, the ACL and cluster-slot guard every
//! derived key passes, the keyspace implementation of the core's store traits, the
//! resumable scan of an installation's keys, and the glue that keeps the in-memory indexes
//! exact in front of the keyspace.

pub mod access;
pub mod index;
pub mod installation_scan;
pub mod keys;
pub mod keyspace;

//! The pure core: no Redis type appears below this module. A query is parsed into a typed
//! [`query::Query`], then answered over the storage traits of [`store`]: by the in-memory
//! [`index`] when it is ready, else by the [`keyspace_path`], which reads the sets
//! directly; either way one [`page::Page`]. Writes ([`write`]) and the audit ([`audit`])
//! are turned into [`types::Effect`]s that a store applies.

pub mod audit;
pub mod buckets;
pub mod dense;
#[cfg(any(test, fuzzing))]
pub mod in_memory_store;
pub mod index;
pub mod keyspace_path;
pub mod order;
pub mod page;
pub mod query;
pub mod store;
pub mod trace;
pub mod types;
pub mod values;
pub mod write;

#[cfg(test)]
mod tests;

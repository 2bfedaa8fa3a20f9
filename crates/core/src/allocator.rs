//! The process's allocator: jemalloc, for every binary that links the core.
//!
//! Each record decoded, folded and re-encoded allocates and frees a handful
//! of small blocks, and RocksDB allocates a memtable arena block after block
//! between flushes. glibc's malloc spent about a fifth of ingest's time on
//! those (its bins, consolidation, and page faults on blocks it had given
//! back to the system). jemalloc's thread caches and size classes serve them
//! faster, and it keeps freed pages for a while (ten seconds' decay) before
//! returning them, so a new arena block reuses warm pages.
//!
//! Unprefixed: jemalloc's `malloc` is the process's `malloc`, so RocksDB and
//! librdkafka allocate from it too, and one allocator holds all memory.

#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

//! The Redis tier of cache-core: standalone and cluster, fail-open, with a backplane and
//! distributed locks. (Being built; see the project's issues.)

//! The shared vocabulary and the small utilities every layer above uses: the words a sweep is made
//! of (engine kinds, offload modes: [`kinds`]), the sweep point ([`matrix_cell`]), hardware
//! runners ([`runner`]), a cell's workload as planned ([`workload`]), seeded randomness
//! ([`rng`], numpy's generator in [`numpy_random`]), hashing, statistics ([`stats`],
//! [`student_t`]), the KV-capacity formula, GPU prices and power, YAML with locations, the
//! shutdown signal, tokenizers and charts ([`plot`]). Nothing here imports a layer above.

pub mod archive;
pub mod capacity;
pub mod economics;
pub mod hash;
pub mod kinds;
pub mod matrix_cell;
pub mod model;
pub mod numpy_random;
pub mod paths;
pub mod plot;
pub mod recipe;
pub mod repeats;
pub mod rng;
pub mod runner;
pub mod shutdown;
pub mod stats;
pub mod student_t;
pub mod tokenizer;
pub mod validity;
pub mod workload;
pub mod yaml;

//! The files that cross the boundaries: agentic traces in ([`trace`], fetched by URL into
//! [`trace_cache`]), the cell artifact directory out ([`artifact`]) with the figures a cell's
//! requests add up to ([`tally`]: the replay writes them, collect's AIPerf import recomputes
//! them), and AIPerf's export files ([`aiperf`]) that InferenceX ingests. Imports only
//! [`crate::base`].

pub mod aiperf;
pub mod artifact;
pub mod tally;
pub mod trace;
pub mod trace_cache;

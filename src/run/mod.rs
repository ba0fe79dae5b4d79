//! Running: the OpenAI client ([`openai`]), the replay engine ([`replay`]), the synthetic cache
//! testers ([`testers`]), the metrics recorder ([`metrics`]), the simulated server ([`sim`]), one
//! cell end to end ([`run_cell`]), and a sweep on Slurm ([`slurm`]) or from GitHub
//! ([`github`]). Imports planning and the layers below.

pub mod github;
pub mod metrics;
pub mod openai;
pub mod replay;
pub mod run_cell;
pub mod sim;
pub mod slurm;
pub mod testers;

//! `kvsweep oracle`: offline bounds on the hit rate any KV cache could reach on a trace, and
//! what they mean for cards and machines.

pub mod bounds;
pub mod naive;
pub mod stream;

#[cfg(test)]
mod tests;

//! A seeded fault simulation of the Billing API (`make sim`).
//!
//! One process runs the real routers of every function over one state, the embedded
//! DynamoDB engine (in memory) and the Stripe emulator, whose clock the simulation drives
//! (and the API's with it). From one seed it draws the actors, a sequence of operations and
//! the faults each one carries: Stripe calls failing before their effect or losing their
//! answer after it, DynamoDB calls throttled, conflicting, unreachable or answered-lost,
//! handlers dropped mid-request, webhook deliveries dropped, duplicated, reordered and
//! delayed, clients retrying. After every step it checks the money invariants that must
//! hold at all times, and at quiescence (every delivery made, one final reconcile) the ones
//! that hold once the world is quiet. A violation stops the seed with its trace; the same
//! seed replays the same operations and fault schedule.

pub mod check;
pub mod ops;
pub mod run;
pub mod world;

pub use run::{Options, SeedReport, Violation, run_seed, run_seeds};

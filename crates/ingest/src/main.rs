//! The ingest service binary.

fn main() {
    journey_core::service::main(journey_ingest::run);
}

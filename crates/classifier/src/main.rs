//! The classifier service binary.

fn main() {
    journey_core::service::main(journey_classifier::run);
}

//! The alerting service binary.

fn main() {
    journey_core::service::main(journey_alerting::run);
}

//! The sessionizer service binary.

fn main() {
    journey_core::service::main(journey_sessionizer::run);
}

pub mod secrets;
pub mod user;

pub mod connect;
pub mod process;

pub mod connect;
pub mod env;
pub mod mmap;
pub mod openssl;
pub mod payload;
pub mod process;

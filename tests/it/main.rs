//! wsgate integration tests: the real server in-process on 127.0.0.1:0 with
//! a real SQLite file in a temp dir, driven by real HTTP clients; and the
//! real binary, driven as a user would.

mod common;

mod auth;
mod cli;
mod process;
mod store;
mod ws;

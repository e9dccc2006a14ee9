//! The configuration store on sled.

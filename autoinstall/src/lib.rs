//! Ubuntu autoinstall documents (user-data, meta-data, netplan) from templates. Pure: no tokio,
//! no sockets.
//!
//! Starts empty; the autoinstall issue fills it.

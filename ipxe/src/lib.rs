//! iPXE: firmware kind → boot file, and iPXE script rendering. Pure: text in, text out.
//!
//! Starts empty; the DHCP and boot-path issues fill it.

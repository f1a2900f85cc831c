//! The image catalogue (ISO import, kernel/initrd extraction) and the APT mirror.
//!
//! Starts empty; the boot-path and images issues fill it.

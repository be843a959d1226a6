//! Keras' networks, read from Keras' own `.h5` weights files.
pub mod h5;
pub mod resnet;

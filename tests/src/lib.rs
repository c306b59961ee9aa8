//! End-to-end tests over real sockets, real MQTT clients (rumqttc, mosquitto_pub/sub,
//! paho-mqtt) and a real etcd. The helpers that start those processes live here; the tests live
//! in `tests/tests/`.
//!
//! The broker they exercise arrives with issue 3.

#![forbid(unsafe_code)]

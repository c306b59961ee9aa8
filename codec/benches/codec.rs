//! Decode and encode cost of a PUBLISH with a 64-byte payload (QoS 0 and QoS 1, MQTT 3.1.1 and
//! 5.0). Run with `cargo bench -p shardmq-codec --bench codec`; recorded in `perf/results/codec.md`.
//!
//! Decoding is measured the way a connection does it: a read buffer holding many packets back
//! to back, framed and parsed one after another.

use bytes::{Bytes, BytesMut};
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use shardmq_codec::{
    decode_packet, ByteString, Decoded, Packet, PacketId, Properties, ProtocolVersion, Publish,
    QoS, PACKET_BYTES_MAX,
};

const PACKETS_PER_BUFFER: usize = 1000;

fn publish(qos: QoS) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: ByteString::from_static("sensors/building-7/floor-3/temperature"),
        packet_id: if qos == QoS::AtMostOnce { None } else { PacketId::new(4242) },
        properties: Properties::default(),
        payload: Bytes::from(vec![0xA5; 64]),
    })
}

fn bench_publish(c: &mut Criterion) {
    for (version, label) in [(ProtocolVersion::V3_1_1, "v311"), (ProtocolVersion::V5, "v5")] {
        for (qos, qos_label) in [(QoS::AtMostOnce, "qos0"), (QoS::AtLeastOnce, "qos1")] {
            let packet = publish(qos);
            let mut one = BytesMut::new();
            packet.encode(version, &mut one).expect("encodes");
            let stream: Vec<u8> =
                one.iter().copied().cycle().take(one.len() * PACKETS_PER_BUFFER).collect();

            let mut group = c.benchmark_group(format!("publish_64B/{label}/{qos_label}"));
            group.throughput(Throughput::Elements(PACKETS_PER_BUFFER as u64));
            group.bench_function("decode", |b| {
                b.iter_batched(
                    || BytesMut::from(stream.as_slice()),
                    |mut buf| {
                        let mut count = 0;
                        while let Ok(Decoded::Packet(packet)) =
                            decode_packet(&mut buf, version, PACKET_BYTES_MAX)
                        {
                            std::hint::black_box(&packet);
                            count += 1;
                        }
                        assert_eq!(count, PACKETS_PER_BUFFER);
                    },
                    BatchSize::LargeInput,
                )
            });
            group.bench_function("encode", |b| {
                let mut buf = BytesMut::with_capacity(one.len() * PACKETS_PER_BUFFER);
                b.iter(|| {
                    buf.clear();
                    for _ in 0..PACKETS_PER_BUFFER {
                        packet.encode(version, &mut buf).expect("encodes");
                    }
                    std::hint::black_box(&buf);
                })
            });
            group.finish();
        }
    }
}

criterion_group!(benches, bench_publish);
criterion_main!(benches);

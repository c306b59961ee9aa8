"""A QoS 1 publish/subscribe round trip through paho-mqtt (Debian's python3-paho-mqtt).

Usage: paho_round_trip.py HOST PORT VERSION, VERSION being 311 or 5. A subscriber and a publisher
speaking VERSION connect; the subscriber subscribes at QoS 1, the publisher publishes one QoS 1
message and waits for its PUBACK, and the subscriber must receive it at QoS 1. Prints "ok" and
exits 0 on success; exits non-zero saying what went wrong otherwise.
"""

import sys
import threading

try:
    import paho.mqtt.client as mqtt
except ImportError:
    sys.exit("paho-mqtt is not installed for /usr/bin/python3: "
             "apt-get install python3-paho-mqtt (scripts/test does this)")

TIMEOUT_SECS = 5
TOPIC = "e2e/paho"


def code_of(reason):
    """An int for a 3.1.1 return code or a v5 ReasonCodes object."""
    return getattr(reason, "value", reason)


def client(client_id, protocol):
    # paho-mqtt 2.x requires choosing a callback API; Debian 12's 1.6 has only the first one.
    if hasattr(mqtt, "CallbackAPIVersion"):
        return mqtt.Client(mqtt.CallbackAPIVersion.VERSION1, client_id=client_id,
                           protocol=protocol)
    return mqtt.Client(client_id=client_id, protocol=protocol)


def wait(event, what):
    if not event.wait(TIMEOUT_SECS):
        sys.exit(f"no {what} within {TIMEOUT_SECS} s")


def connect(c, host, port, what):
    connected = threading.Event()
    result = {}

    def on_connect(_client, _userdata, _flags, reason, *_properties):
        result["code"] = code_of(reason)
        connected.set()

    c.on_connect = on_connect
    c.connect(host, port, keepalive=30)
    c.loop_start()
    wait(connected, f"CONNACK for the {what}")
    if result["code"] != 0:
        sys.exit(f"the {what}'s CONNACK has code {result['code']}")


def main():
    host, port, version = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    protocol = {"311": mqtt.MQTTv311, "5": mqtt.MQTTv5}[version]
    payload = f"hello from paho {version}".encode()

    subscriber = client(f"paho-sub-{version}", protocol)
    subscribed = threading.Event()
    granted = []
    received = []
    got_message = threading.Event()

    def on_subscribe(_client, _userdata, _mid, granted_qos, *_properties):
        granted.extend(code_of(code) for code in granted_qos)
        subscribed.set()

    def on_message(_client, _userdata, message):
        received.append((message.topic, message.qos, message.payload))
        got_message.set()

    subscriber.on_subscribe = on_subscribe
    subscriber.on_message = on_message
    connect(subscriber, host, port, "subscriber")
    subscriber.subscribe(TOPIC, qos=1)
    wait(subscribed, "SUBACK")
    if granted != [1]:
        sys.exit(f"SUBACK granted {granted}, expected [1]")

    publisher = client(f"paho-pub-{version}", protocol)
    acknowledged = threading.Event()
    publisher.on_publish = lambda _client, _userdata, _mid: acknowledged.set()
    connect(publisher, host, port, "publisher")
    publisher.publish(TOPIC, payload, qos=1)
    wait(acknowledged, "PUBACK")

    wait(got_message, "message at the subscriber")
    if received != [(TOPIC, 1, payload)]:
        sys.exit(f"received {received}, expected {[(TOPIC, 1, payload)]}")

    for c in (publisher, subscriber):
        c.disconnect()
        c.loop_stop()
    print("ok")


if __name__ == "__main__":
    main()

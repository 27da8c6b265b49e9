//! Offgrid-Net radio links: KISS serial LoRa, UDP multicast, simulated radio, BLE, signed beacons, and a libp2p transport over them.

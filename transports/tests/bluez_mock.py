#!/usr/bin/python3
"""A fake BlueZ for the btleplug tests (python3-dbusmock's bluez5 template).

Runs on the bus named by DBUS_SYSTEM_BUS_ADDRESS (a private dbus-daemon the test started).
Prints READY once adapter hci0 exists, then reads commands on stdin, one per line:

    add <address> <name> [<service uuid> <service data hex>]

adds a device as a scan would find it (with the service data, if given, set the way BlueZ
sets it: a{sv} of uuid -> ay) and prints ADDED. Exits when stdin closes.
"""
import subprocess
import sys
import time

import dbus

BUS = 'org.bluez'


def main():
    server = subprocess.Popen(
        [sys.executable, '-m', 'dbusmock', '--system', '--template', 'bluez5'],
        stdout=subprocess.DEVNULL,
    )
    try:
        bus = dbus.SystemBus()
        deadline = time.monotonic() + 20
        while not bus.name_has_owner(BUS):
            if time.monotonic() > deadline or server.poll() is not None:
                print('FAILED: the bluez5 mock did not start', flush=True)
                return 1
            time.sleep(0.05)
        mock = dbus.Interface(bus.get_object(BUS, '/org/bluez'), 'org.bluez.Mock')
        mock.AddAdapter('hci0', 'offgrid-test')
        print('READY', flush=True)
        for line in sys.stdin:
            parts = line.split()
            if not parts or parts[0] != 'add':
                continue
            address, name = parts[1], parts[2]
            path = mock.AddDevice('hci0', address, name)
            if len(parts) >= 5:
                data = dbus.Array(bytes.fromhex(parts[4]), signature='y')
                service_data = dbus.Dictionary({parts[3]: data}, signature='sv')
                props = dbus.Interface(bus.get_object(BUS, path),
                                       'org.freedesktop.DBus.Properties')
                # Set emits PropertiesChanged, as BlueZ does when an advertisement arrives.
                props.Set('org.bluez.Device1', 'UUIDs',
                          dbus.Array([parts[3]], signature='s'))
                props.Set('org.bluez.Device1', 'ServiceData', service_data)
            print('ADDED', flush=True)
        return 0
    finally:
        server.terminate()
        server.wait()


if __name__ == '__main__':
    sys.exit(main())

#!/usr/bin/env python3
"""Makes the VirtualBox box from the disk Packer built (no VirtualBox needed).

A VirtualBox box is a tar of box.ovf (the machine: CPUs, memory, a SATA disk, a NAT network
card), the disk as a stream-optimized VMDK, metadata.json and the included Vagrantfile.

    packer/virtualbox-box.py DISK.qcow2 OUT.box [--os-type Debian_64|Ubuntu_64] [--cpus N] [--memory MIB]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from xml.etree import ElementTree as ET

DISK = "box-disk001.vmdk"
OVF = "http://schemas.dmtf.org/ovf/envelope/1"
RASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
VSSD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_VirtualSystemSettingData"
VBOX = "http://www.virtualbox.org/ovf/machine"
VMDK_FORMAT = "http://www.vmware.com/interfaces/specifications/vmdk.html#streamOptimized"
# CIM operating system ids that VirtualBox maps back to its own OS types
OS_TYPES = {"Debian_64": "96", "Ubuntu_64": "94"}


def ovf(name: str, capacity: int, os_type: str, cpus: int, memory: int) -> bytes:
    for prefix, uri in (("ovf", OVF), ("rasd", RASD), ("vssd", VSSD), ("vbox", VBOX)):
        ET.register_namespace(prefix, uri)
    o = lambda tag: f"{{{OVF}}}{tag}"  # noqa: E731
    env = ET.Element(o("Envelope"), {o("version"): "1.0"})
    refs = ET.SubElement(env, o("References"))
    ET.SubElement(refs, o("File"), {o("id"): "file1", o("href"): DISK})
    disks = ET.SubElement(env, o("DiskSection"))
    ET.SubElement(disks, o("Info")).text = "The virtual disks"
    ET.SubElement(disks, o("Disk"), {o("capacity"): str(capacity), o("diskId"): "vmdisk1",
                                     o("fileRef"): "file1", o("format"): VMDK_FORMAT})
    nets = ET.SubElement(env, o("NetworkSection"))
    ET.SubElement(nets, o("Info")).text = "The logical networks"
    ET.SubElement(ET.SubElement(nets, o("Network"), {o("name"): "NAT"}), o("Description")).text = "NAT"
    system = ET.SubElement(env, o("VirtualSystem"), {o("id"): name})
    ET.SubElement(system, o("Info")).text = "A virtual machine"
    os_section = ET.SubElement(system, o("OperatingSystemSection"), {o("id"): OS_TYPES[os_type]})
    ET.SubElement(os_section, o("Info")).text = "The guest operating system"
    ET.SubElement(os_section, f"{{{VBOX}}}OSType", {o("required"): "false"}).text = os_type
    hardware = ET.SubElement(system, o("VirtualHardwareSection"))
    ET.SubElement(hardware, o("Info")).text = "The virtual hardware"
    vsys = ET.SubElement(hardware, o("System"))
    for tag, text in (("ElementName", "Virtual Hardware Family"), ("InstanceID", "0"),
                      ("VirtualSystemIdentifier", name), ("VirtualSystemType", "virtualbox-2.2")):
        ET.SubElement(vsys, f"{{{VSSD}}}{tag}").text = text
    items = [
        {"ElementName": f"{cpus} virtual CPU", "InstanceID": "1", "ResourceType": "3", "VirtualQuantity": str(cpus)},
        {"AllocationUnits": "MegaBytes", "ElementName": f"{memory} MB of memory", "InstanceID": "2",
         "ResourceType": "4", "VirtualQuantity": str(memory)},
        {"Address": "0", "ElementName": "sataController0", "InstanceID": "3", "ResourceSubType": "AHCI",
         "ResourceType": "20"},
        {"AddressOnParent": "0", "ElementName": "disk1", "HostResource": "/disk/vmdisk1", "InstanceID": "4",
         "Parent": "3", "ResourceType": "17"},
        {"AutomaticAllocation": "true", "Connection": "NAT", "ElementName": "Ethernet adapter on NAT",
         "InstanceID": "5", "ResourceSubType": "E1000", "ResourceType": "10"},
    ]
    for fields in items:
        item = ET.SubElement(hardware, o("Item"))
        for tag in sorted(fields):  # the CIM schema orders the elements alphabetically
            ET.SubElement(item, f"{{{RASD}}}{tag}").text = fields[tag]
    ET.indent(env)
    return ET.tostring(env, encoding="utf-8", xml_declaration=True)


def virtual_size(image: Path) -> int:
    info = subprocess.run(["qemu-img", "info", "--output=json", str(image)],
                          check=True, capture_output=True, text=True).stdout
    return int(json.loads(info)["virtual-size"])


def build(disk: Path, out: Path, vagrantfile: Path, os_type: str, cpus: int, memory: int) -> None:
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        work = Path(tmp)
        subprocess.run(["qemu-img", "convert", "-O", "vmdk", "-o", "subformat=streamOptimized",
                        str(disk), str(work / DISK)], check=True)
        (work / "box.ovf").write_bytes(ovf(out.stem, virtual_size(work / DISK), os_type, cpus, memory))
        (work / "metadata.json").write_text(json.dumps({"provider": "virtualbox"}) + "\n")
        shutil.copy(vagrantfile, work / "Vagrantfile")
        with tarfile.open(work / "box.tmp", "w:gz", compresslevel=1) as tar:  # the VMDK is compressed
            for name in ("box.ovf", DISK, "metadata.json", "Vagrantfile"):
                tar.add(work / name, arcname=name)
        (work / "box.tmp").rename(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("disk", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--os-type", choices=sorted(OS_TYPES), default="Debian_64")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--memory", type=int, default=4096, help="MiB")
    parser.add_argument("--vagrantfile", type=Path, default=Path(__file__).with_name("box.Vagrantfile"))
    args = parser.parse_args()
    build(args.disk, args.out, args.vagrantfile, args.os_type, args.cpus, args.memory)


if __name__ == "__main__":
    main()

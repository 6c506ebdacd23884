#!/bin/busybox sh
# shellcheck shell=dash disable=SC2013
# kb-guest-init.sh — /init of the tiny test guest (tests/tools/kb-guest.py packs it into the
# initramfs next to busybox-static and the virtio modules). It runs as PID 1 under
# qemu-system-x86_64, its stdout is the serial console, and the host reads that console as a log
# file: every line this script prints starts with "KB" so the host can grep for it.
#
# Kernel command line:
#   kb.mode=writer    write a numbered pattern to /dev/vda, O_DIRECT, one 4 KiB block at a time
#   kb.mode=poweroff  boot, then power the machine off from inside (qemu exits by itself)
#   kb.mode=idle      boot, then do nothing (the default)
#   kb.blocks=N       the writer cycles over blocks 0..N-1 (default 256)
#   kb.delay=USEC     the writer sleeps this long after each acknowledged write (default 20000)
#
# Lines printed:
#   KBBOOT <uptime>            init started
#   KBREADY <uptime>           modules loaded and /dev/vda present
#   KBW <block> <gen> <uptime> block <block> now holds generation <gen>: the write completed
#   KBERR <what>               anything that went wrong (a failed write: the guest saw an I/O error)
#   KBPOWEROFF                 about to power off
#
# The writer's block <i>, generation <g>, is 128 copies of the 32-byte line
# "KBVM blk=%08d gen=%08d.\n" (4096 bytes). It writes blocks 0..N-1 with generation 1,
# then again with generation 2, and so on, one write at a time (dd oflag=direct: the write has
# reached the virtual disk, i.e. qemu's image, when dd returns). tests/tools/kb-vmverify.py
# checks the final image against the KBW lines of every serial log the guest printed to.

/bin/busybox mkdir -p /proc /sys /dev /tmp /bin /sbin /usr/bin /usr/sbin
/bin/busybox --install -s
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev 2>/dev/null
exec </dev/console >/dev/console 2>&1
up() { cut -d' ' -f1 /proc/uptime; }
echo "KBBOOT $(up)"

mode=idle blocks=256 delay=20000
for a in $(cat /proc/cmdline); do
    case "$a" in
        kb.mode=*) mode=${a#kb.mode=} ;;
        kb.blocks=*) blocks=${a#kb.blocks=} ;;
        kb.delay=*) delay=${a#kb.delay=} ;;
    esac
done

for m in $(cat /lib/modules/load-order); do
    insmod "/lib/modules/$m.ko" || echo "KBERR insmod $m failed"
done
n=0
while [ ! -b /dev/vda ] && [ $n -lt 100 ]; do usleep 100000; n=$((n + 1)); done
[ -b /dev/vda ] || echo "KBERR no /dev/vda after 10 s"
echo "KBREADY $(up) mode=$mode"

writer() {
    fmt='KBVM blk=%08d gen=%08d.\n'
    g=1
    while :; do
        i=0
        while [ $i -lt "$blocks" ]; do
            # 128 (block, gen) pairs: printf reuses its format for each pair, 4096 bytes in all.
            a="$i $g"; a="$a $a"; a="$a $a"; a="$a $a"; a="$a $a"; a="$a $a"; a="$a $a"; a="$a $a"
            # shellcheck disable=SC2086,SC2059
            if printf "$fmt" $a | dd of=/dev/vda bs=4096 count=1 seek=$i iflag=fullblock \
                    oflag=direct conv=notrunc 2>/tmp/dd.err; then
                read -r up _ </proc/uptime
                echo "KBW $i $g $up"
            else
                echo "KBERR write blk=$i gen=$g: $(tr '\n' ' ' </tmp/dd.err)"
            fi
            [ "$delay" -gt 0 ] && usleep "$delay"
            i=$((i + 1))
        done
        g=$((g + 1))
    done
}

case "$mode" in
    writer) writer ;;
    poweroff)
        echo "KBPOWEROFF"
        sync
        poweroff -f
        ;;
esac
while :; do sleep 3600; done

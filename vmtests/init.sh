#!/bin/sh
# PID 1 of a vmtests guest, run by busybox from the initramfs.
#
# Settings arrive in the environment, as KEY=value words on the kernel command line:
#   VMTEST_TAG       virtiofs tag of the host's root (shared read-only; enforced by the host)
#   VMTEST_RUN       host directory holding cmd.sh, the command to run
#   VMTEST_MODE      "run" (stdin /dev/null, stdout on ttyS1, stderr on ttyS2) or "shell"
#   VMTEST_VMLINUX   host path of the kernel's debug vmlinux, placed where drgn looks for it
#   VMTEST_MODULE_DEBUG  colon-separated host paths of modules' debug files, placed likewise
#   VMTEST_TMPBINDS  colon-separated host paths under /tmp to keep visible over the guest's /tmp
#   VMTEST_CRASH     1: load a capture kernel (kexec -p, from $VMTEST_RUN/capture.sh) and panic
#                    when the host writes "panic" on ttyS3
# VMTEST_MODE=capture is the capture kernel itself: it runs $VMTEST_RUN/capture.sh, which
# writes /proc/vmcore through makedumpfile to the scratch disk.
# The exit status goes to the console as "@@vmtests-exit N", then the guest powers off.
# "@@vmtests-init" on the console says the kernel booted and this script started.

export PATH=/bin
/bin/busybox --install -s /bin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
# The host waits for this line: a guest that dies before it failed to boot, and is booted again.
echo "@@vmtests-init" > /dev/console

say() { echo "vmtests-init: $*" > /dev/console; }
finish() {
	echo "@@vmtests-exit $1" > /dev/console
	poweroff -f
	sleep 5
	echo o > /proc/sysrq-trigger
}
die() { say "$*"; finish 125; }

while read -r m; do
	[ -n "$m" ] || continue
	insmod "/modules/$m.ko" || say "insmod $m failed"
done < /modules/order

R=/newroot
mount -t virtiofs "$VMTEST_TAG" $R || die "cannot mount the host's root over virtiofs"

mount -t proc proc $R/proc
mount -t sysfs sysfs $R/sys
mount -t devtmpfs devtmpfs $R/dev
mkdir -p $R/dev/pts $R/dev/shm
mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts $R/dev/pts
mount -t tmpfs -o mode=1777 tmpfs $R/dev/shm
mount -t cgroup2 cgroup2 $R/sys/fs/cgroup || say "cannot mount cgroup2"
mount -t tmpfs -o mode=755 tmpfs $R/run

# /tmp is a guest tmpfs. Host paths under /tmp that the run needs (the working
# directory, the repository) stay visible at the same path, read-only.
mkdir -p $R/run/vmtests/host-tmp
mount --bind $R/tmp $R/run/vmtests/host-tmp
mount -t tmpfs -o mode=1777 tmpfs $R/tmp
if [ -n "$VMTEST_TMPBINDS" ]; then
	IFS=:
	for p in $VMTEST_TMPBINDS; do
		mkdir -p "$R$p"
		mount --bind "$R/run/vmtests/host-tmp${p#/tmp}" "$R$p" || say "cannot bind $p"
	done
	unset IFS
fi

# Make directory $1 writable in the guest while its host entries stay visible as symlinks.
shadow() {
	h=/run/vmtests/shadow$1
	mkdir -p "$R$h"
	mount --bind "$R$1" "$R$h" || return 1
	mount -t tmpfs -o mode=755 tmpfs "$R$1" || return 1
	for e in "$R$h"/* "$R$h"/.[!.]*; do
		if [ -e "$e" ] || [ -L "$e" ]; then
			ln -s "$h/${e##*/}" "$R$1/"
		fi
	done
}

# The debug vmlinux goes where Debian's -dbg package puts it, so plain `drgn` finds it.
release=$(uname -r)
if [ -n "$VMTEST_VMLINUX" ]; then
	if [ -d $R/usr/lib/debug ] && shadow /usr/lib/debug; then
		mkdir -p $R/usr/lib/debug/boot
		ln -s "$VMTEST_VMLINUX" "$R/usr/lib/debug/boot/vmlinux-$release"
	elif [ -d $R/boot ] && shadow /boot; then
		ln -s "$VMTEST_VMLINUX" "$R/boot/vmlinux-$release"
	else
		say "no place for the debug vmlinux: neither /usr/lib/debug nor /boot exists"
	fi
	# The modules' debug files where the -dbg package puts them, so drgn finds them too.
	if [ -n "$VMTEST_MODULE_DEBUG" ] && [ -d $R/usr/lib/debug/boot ]; then
		mkdir -p "$R/usr/lib/debug/lib/modules/$release/kernel"
		IFS=:
		for ko in $VMTEST_MODULE_DEBUG; do
			ln -s "$ko" "$R/usr/lib/debug/lib/modules/$release/kernel/${ko##*/}"
		done
		unset IFS
	fi
fi

ip link set lo up || say "cannot bring up lo"
hostname vmtest

if [ "$VMTEST_MODE" = capture ]; then
	say "capture kernel: saving /proc/vmcore"
	chroot $R /bin/sh "$VMTEST_RUN/capture.sh" < /dev/null > /dev/console 2>&1
	finish $?
fi

if [ "$VMTEST_CRASH" = 1 ]; then
	chroot $R /bin/sh "$VMTEST_RUN/kexec.sh" > /dev/console 2>&1 || die "kexec -p failed"
	[ "$(cat /sys/kernel/kexec_crash_loaded)" = 1 ] || die "no capture kernel loaded"
	echo 1 > /proc/sys/kernel/sysrq
	stty -F /dev/ttyS3 raw -echo
	(
		read -r word < /dev/ttyS3
		if [ "$word" = panic ]; then
			# A process of its own, so the dump names a known task as the one that crashed.
			# (the pause lets the serial port carry the pid out before the panic stops it)
			chroot $R /bin/sh -c 'echo "@@vmtests-panic-pid $$"; sleep 1; echo c > /proc/sysrq-trigger' \
				> /dev/console 2>&1
		fi
	) &
fi

[ -r "$R$VMTEST_RUN/cmd.sh" ] || die "cannot read $VMTEST_RUN/cmd.sh in the guest"
if [ "$VMTEST_MODE" = shell ]; then
	setsid -c chroot $R /bin/sh "$VMTEST_RUN/cmd.sh" < /dev/ttyS0 > /dev/ttyS0 2>&1
	rc=$?
else
	# The command writes to pipes, as on a host, not to the serial ttys.
	stty -F /dev/ttyS1 raw -echo
	stty -F /dev/ttyS2 raw -echo
	mkfifo /stdout /stderr
	cat /stdout > /dev/ttyS1 &
	out=$!
	cat /stderr > /dev/ttyS2 &
	err=$!
	chroot $R /bin/sh "$VMTEST_RUN/cmd.sh" < /dev/null > /stdout 2> /stderr
	rc=$?
	# Processes the command left behind may hold the pipes: wait for them briefly only.
	for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
		kill -0 $out 2>/dev/null || kill -0 $err 2>/dev/null || break
		sleep 0.1
	done
	kill $out $err 2>/dev/null
fi
finish $rc

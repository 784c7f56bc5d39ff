import type { OciSeccomp, SeccompSyscall } from './oci-spec.js';

/*
 * The `runtime/default` seccomp profile, written for this project after the behaviour of
 * the well-known default (docker's, which containerd ships): deny by default with EPERM,
 * allow an explicit list of syscalls that ordinary programs need, and allow the
 * privileged ones only when the container holds the capability the kernel would check
 * anyway (so a container granted CAP_SYS_ADMIN may mount, one without may not even try).
 * The profile is built per container from its bounding capabilities.
 */

/** EPERM: what a denied syscall returns, as if the kernel had refused it. */
export const DEFAULT_SECCOMP_ERRNO = 1;
/** ENOSYS for clone3 without CAP_SYS_ADMIN: libc then falls back to clone, whose flags can be checked. */
const ENOSYS = 38;

/** Syscalls every container may make. */
const ALLOWED: readonly string[] = [
  // files and directories
  'access', 'chdir', 'chmod', 'chown', 'chown32', 'close', 'close_range', 'copy_file_range', 'creat', 'dup',
  'dup2', 'dup3', 'faccessat', 'faccessat2', 'fadvise64', 'fadvise64_64', 'fallocate', 'fchdir', 'fchmod',
  'fchmodat', 'fchmodat2', 'fchown', 'fchown32', 'fchownat', 'fcntl', 'fcntl64', 'fdatasync', 'fgetxattr',
  'flistxattr', 'flock', 'fremovexattr', 'fsetxattr', 'fstat', 'fstat64', 'fstatat64', 'fstatfs', 'fstatfs64',
  'fsync', 'ftruncate', 'ftruncate64', 'futimesat', 'getcwd', 'getdents', 'getdents64', 'getxattr', 'lchown',
  'lchown32', 'lgetxattr', 'link', 'linkat', 'listxattr', 'llistxattr', '_llseek', 'lremovexattr', 'lseek',
  'lsetxattr', 'lstat', 'lstat64', 'mkdir', 'mkdirat', 'mknod', 'mknodat', 'newfstatat', 'open', 'openat',
  'openat2', 'pread64', 'preadv', 'preadv2', 'pwrite64', 'pwritev', 'pwritev2', 'read', 'readahead',
  'readlink', 'readlinkat', 'readv', 'removexattr', 'rename', 'renameat', 'renameat2', 'rmdir', 'sendfile',
  'sendfile64', 'setxattr', 'splice', 'stat', 'stat64', 'statfs', 'statfs64', 'statx', 'symlink',
  'symlinkat', 'sync', 'sync_file_range', 'syncfs', 'tee', 'truncate', 'truncate64', 'umask', 'unlink',
  'unlinkat', 'utime', 'utimensat', 'utimensat_time64', 'utimes', 'vmsplice', 'write', 'writev',
  // events, polling and async io
  'epoll_create', 'epoll_create1', 'epoll_ctl', 'epoll_ctl_old', 'epoll_pwait', 'epoll_pwait2', 'epoll_wait',
  'epoll_wait_old', 'eventfd', 'eventfd2', 'fanotify_mark', 'inotify_add_watch', 'inotify_init',
  'inotify_init1', 'inotify_rm_watch', 'io_cancel', 'io_destroy', 'io_getevents', 'io_pgetevents',
  'io_pgetevents_time64', 'io_setup', 'io_submit', 'ioctl', 'pause', 'pipe', 'pipe2', 'poll', 'ppoll',
  'ppoll_time64', 'pselect6', 'pselect6_time64', 'select', '_newselect', 'signalfd', 'signalfd4',
  'timerfd_create', 'timerfd_gettime', 'timerfd_gettime64', 'timerfd_settime', 'timerfd_settime64',
  // memory
  'brk', 'madvise', 'membarrier', 'memfd_create', 'mincore', 'mlock', 'mlock2', 'mlockall', 'mmap', 'mmap2',
  'mprotect', 'mremap', 'msync', 'munlock', 'munlockall', 'munmap', 'pkey_alloc', 'pkey_free', 'pkey_mprotect',
  'remap_file_pages',
  // processes, threads and signals
  'capget', 'capset', 'execve', 'execveat', 'exit', 'exit_group', 'fork', 'futex', 'futex_time64', 'futex_waitv',
  'get_robust_list', 'get_thread_area', 'getcpu', 'getegid', 'getegid32', 'geteuid', 'geteuid32', 'getgid',
  'getgid32', 'getgroups', 'getgroups32', 'getpgid', 'getpgrp', 'getpid', 'getppid', 'getpriority',
  'getresgid', 'getresgid32', 'getresuid', 'getresuid32', 'getrlimit', 'getrusage', 'getsid', 'gettid',
  'getuid', 'getuid32', 'ioprio_get', 'ioprio_set', 'kill', 'pidfd_open', 'pidfd_send_signal', 'prctl',
  'prlimit64', 'process_mrelease', 'restart_syscall', 'rseq', 'rt_sigaction', 'rt_sigpending',
  'rt_sigprocmask', 'rt_sigqueueinfo', 'rt_sigreturn', 'rt_sigsuspend', 'rt_sigtimedwait',
  'rt_sigtimedwait_time64', 'rt_tgsigqueueinfo', 'sched_get_priority_max', 'sched_get_priority_min',
  'sched_getaffinity', 'sched_getattr', 'sched_getparam', 'sched_getscheduler', 'sched_rr_get_interval',
  'sched_rr_get_interval_time64', 'sched_setaffinity', 'sched_setattr', 'sched_setparam', 'sched_setscheduler',
  'sched_yield', 'seccomp', 'set_robust_list', 'set_thread_area', 'set_tid_address', 'setfsgid', 'setfsgid32',
  'setfsuid', 'setfsuid32', 'setgid', 'setgid32', 'setgroups', 'setgroups32', 'setpgid', 'setpriority',
  'setregid', 'setregid32', 'setresgid', 'setresgid32', 'setresuid', 'setresuid32', 'setreuid', 'setreuid32',
  'setrlimit', 'setsid', 'setuid', 'setuid32', 'sigaltstack', 'sigprocmask', 'sigreturn', 'tgkill', 'tkill',
  'ugetrlimit', 'vfork', 'wait4', 'waitid', 'waitpid', 'landlock_add_rule', 'landlock_create_ruleset',
  'landlock_restrict_self',
  // time (reading it; setting it is CAP_SYS_TIME below)
  'adjtimex', 'alarm', 'clock_getres', 'clock_getres_time64', 'clock_gettime', 'clock_gettime64',
  'clock_nanosleep', 'clock_nanosleep_time64', 'getitimer', 'gettimeofday', 'nanosleep', 'setitimer', 'time',
  'timer_create', 'timer_delete', 'timer_getoverrun', 'timer_gettime', 'timer_gettime64', 'timer_settime',
  'timer_settime64', 'times',
  // sockets
  'accept', 'accept4', 'bind', 'connect', 'getpeername', 'getsockname', 'getsockopt', 'listen', 'recv',
  'recvfrom', 'recvmmsg', 'recvmmsg_time64', 'recvmsg', 'send', 'sendmmsg', 'sendmsg', 'sendto', 'setsockopt',
  'shutdown', 'socket', 'socketcall', 'socketpair',
  // System V and POSIX IPC (namespaced by the pod's IPC namespace)
  'ipc', 'mq_getsetattr', 'mq_notify', 'mq_open', 'mq_timedreceive', 'mq_timedreceive_time64', 'mq_timedsend',
  'mq_timedsend_time64', 'mq_unlink', 'msgctl', 'msgget', 'msgrcv', 'msgsnd', 'semctl', 'semget', 'semop',
  'semtimedop', 'semtimedop_time64', 'shmat', 'shmctl', 'shmdt', 'shmget',
  // system information
  'getrandom', 'sysinfo', 'uname',
];

/** Syscalls allowed only to a holder of the capability (the kernel checks it too; this shrinks the attack surface). */
const BY_CAPABILITY: Readonly<Record<string, readonly string[]>> = {
  CAP_DAC_READ_SEARCH: ['open_by_handle_at'],
  CAP_SYS_ADMIN: [
    'bpf', 'clone', 'clone3', 'fanotify_init', 'fsconfig', 'fsmount', 'fsopen', 'fspick', 'lookup_dcookie',
    'mount', 'mount_setattr', 'move_mount', 'name_to_handle_at', 'open_tree', 'perf_event_open', 'quotactl',
    'quotactl_fd', 'setdomainname', 'sethostname', 'setns', 'syslog', 'umount', 'umount2', 'unshare',
  ],
  CAP_SYS_BOOT: ['reboot'],
  CAP_SYS_CHROOT: ['chroot'],
  CAP_SYS_MODULE: ['delete_module', 'init_module', 'finit_module', 'query_module'],
  CAP_SYS_PACCT: ['acct'],
  CAP_SYS_PTRACE: ['kcmp', 'pidfd_getfd', 'process_madvise', 'process_vm_readv', 'process_vm_writev', 'ptrace'],
  CAP_SYS_RAWIO: ['iopl', 'ioperm'],
  CAP_SYS_TIME: ['settimeofday', 'stime', 'clock_settime', 'clock_settime64', 'clock_adjtime', 'clock_adjtime64'],
  CAP_SYS_TTY_CONFIG: ['vhangup'],
  CAP_SYS_NICE: ['get_mempolicy', 'mbind', 'set_mempolicy', 'set_mempolicy_home_node'],
  CAP_SYSLOG: ['syslog'],
  CAP_BPF: ['bpf'],
  CAP_PERFMON: ['perf_event_open'],
};

/** personality(2) values that are harmless: PER_LINUX, PER_LINUX32, UNAME26, both, and the 0xffffffff query. */
const PERSONALITIES = [0x0, 0x8, 0x20000, 0x20008, 0xffffffff];

/** Namespace-creating clone flags: without CAP_SYS_ADMIN, clone must not carry any of them. */
export const CLONE_NAMESPACE_FLAGS = 0x20000 | 0x4000000 | 0x8000000 | 0x10000000 | 0x20000000 | 0x40000000 | 0x2000000;

interface ArchProfile {
  architectures: string[];
  syscalls: string[];
  /** clone's flags argument index (s390 swaps the first two arguments). */
  cloneFlagsIndex: number;
}

/** By Node's `process.arch`. */
function archProfile(arch: string): ArchProfile {
  switch (arch) {
    case 'x64':
      return { architectures: ['SCMP_ARCH_X86_64', 'SCMP_ARCH_X86', 'SCMP_ARCH_X32'], syscalls: ['arch_prctl', 'modify_ldt'], cloneFlagsIndex: 0 };
    case 'ia32':
      return { architectures: ['SCMP_ARCH_X86'], syscalls: ['modify_ldt'], cloneFlagsIndex: 0 };
    case 'arm64':
      return {
        architectures: ['SCMP_ARCH_AARCH64', 'SCMP_ARCH_ARM'],
        syscalls: ['arm_fadvise64_64', 'arm_sync_file_range', 'sync_file_range2', 'breakpoint', 'cacheflush', 'set_tls'],
        cloneFlagsIndex: 0,
      };
    case 'arm':
      return {
        architectures: ['SCMP_ARCH_ARM'],
        syscalls: ['arm_fadvise64_64', 'arm_sync_file_range', 'sync_file_range2', 'breakpoint', 'cacheflush', 'set_tls'],
        cloneFlagsIndex: 0,
      };
    case 's390x':
      return {
        architectures: ['SCMP_ARCH_S390X', 'SCMP_ARCH_S390'],
        syscalls: ['s390_pci_mmio_read', 's390_pci_mmio_write', 's390_runtime_instr'],
        cloneFlagsIndex: 1,
      };
    default:
      return { architectures: [], syscalls: [], cloneFlagsIndex: 0 };
  }
}

/** The default profile for a container whose bounding set is `capabilities`, on `arch`. */
export function defaultSeccompProfile(capabilities: readonly string[], arch: string): OciSeccomp {
  const archInfo = archProfile(arch);
  const syscalls: SeccompSyscall[] = [{ names: [...ALLOWED], action: 'SCMP_ACT_ALLOW' }];
  for (const value of PERSONALITIES) {
    syscalls.push({ names: ['personality'], action: 'SCMP_ACT_ALLOW', args: [{ index: 0, value, op: 'SCMP_CMP_EQ' }] });
  }
  if (archInfo.syscalls.length > 0) syscalls.push({ names: archInfo.syscalls, action: 'SCMP_ACT_ALLOW' });
  for (const [cap, names] of Object.entries(BY_CAPABILITY)) {
    if (capabilities.includes(cap)) syscalls.push({ names: [...names], action: 'SCMP_ACT_ALLOW' });
  }
  if (!capabilities.includes('CAP_SYS_ADMIN')) {
    syscalls.push({
      names: ['clone'],
      action: 'SCMP_ACT_ALLOW',
      args: [{ index: archInfo.cloneFlagsIndex, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: 'SCMP_CMP_MASKED_EQ' }],
    });
    // clone3 passes its flags in a struct seccomp cannot read, so it cannot be checked like clone.
    syscalls.push({ names: ['clone3'], action: 'SCMP_ACT_ERRNO', errnoRet: ENOSYS });
  }
  return {
    defaultAction: 'SCMP_ACT_ERRNO',
    defaultErrnoRet: DEFAULT_SECCOMP_ERRNO,
    architectures: archInfo.architectures,
    syscalls,
  };
}

/** Whether `profile` lets `syscall` through unconditionally (no argument filter): for tests and audits. */
export function allowsUnconditionally(profile: OciSeccomp, syscall: string): boolean {
  return (profile.syscalls ?? []).some(
    (rule) => rule.action === 'SCMP_ACT_ALLOW' && rule.names.includes(syscall) && (rule.args ?? []).length === 0,
  );
}

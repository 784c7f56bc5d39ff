/*
 * The few Linux system calls cri-ledger needs that Node has no API for: mkfifo, mknod,
 * lsetxattr and lgetxattr (a pull writes layers' device nodes, overlay whiteouts and xattrs), mount,
 * umount2, making a persistent network namespace, and a socket in a pod's network
 * namespace (port forwarding). Each used to be a child process
 * (mkfifo(1), mount(8), unshare(1)); spawning one from Node costs about 12 ms on these
 * machines, which was most of CreateContainer's and a good part of RunPodSandbox's
 * latency. A system call costs microseconds.
 *
 * mkfifo, mknod and lsetxattr are synchronous (they never block). mount, umount2 and the network namespace run
 * on the libuv thread pool and resolve a promise, since a mount can wait on the
 * filesystem. The netns is made on a thread of its own, created and joined for the
 * purpose: unshare(CLONE_NEWNET) moves the calling thread into the new namespace for
 * good, and neither Node's main thread nor a pool thread (which resolves DNS names) may
 * be moved.
 *
 * Errors are thrown or rejected as Error objects with `code` (the errno name, e.g.
 * "ENOENT"), `errno`, `syscall` and `path`, like Node's own fs errors.
 *
 * Built by scripts/build-native.sh with the C compiler against Node's headers; loaded by
 * src/adapters/native/syscalls.ts.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <node_api.h>

#define CHECK(call)                                                         \
  do {                                                                      \
    if ((call) != napi_ok) {                                                \
      napi_throw_error(env, NULL, "cri-ledger native: N-API call failed");  \
      return NULL;                                                          \
    }                                                                       \
  } while (0)

/* errno -> its symbolic name, for the error's `code`. */
static const char *errno_name(int e) {
  switch (e) {
    case EPERM: return "EPERM";
    case ENOENT: return "ENOENT";
    case EIO: return "EIO";
    case EACCES: return "EACCES";
    case EBUSY: return "EBUSY";
    case EEXIST: return "EEXIST";
    case ENOTDIR: return "ENOTDIR";
    case EISDIR: return "EISDIR";
    case EINVAL: return "EINVAL";
    case ENOSPC: return "ENOSPC";
    case EROFS: return "EROFS";
    case ENAMETOOLONG: return "ENAMETOOLONG";
    case ELOOP: return "ELOOP";
    case ENOMEM: return "ENOMEM";
    case ENODEV: return "ENODEV";
    case ENOTBLK: return "ENOTBLK";
    case EMFILE: return "EMFILE";
    case EAGAIN: return "EAGAIN";
    case ENOSYS: return "ENOSYS";
    case ENOTSUP: return "ENOTSUP";
    case E2BIG: return "E2BIG";
    case ERANGE: return "ERANGE";
    case EAFNOSUPPORT: return "EAFNOSUPPORT";
    case ENFILE: return "ENFILE";
    default: return "UNKNOWN";
  }
}

/* An Error like Node's fs errors: "<syscall> <path>: <strerror> (<CODE>)". */
static napi_value make_error(napi_env env, int e, const char *syscall_name, const char *path) {
  char message[4352];
  snprintf(message, sizeof message, "%s %s: %s (%s)", syscall_name, path ? path : "", strerror(e), errno_name(e));
  napi_value msg, code, error, value;
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &msg);
  napi_create_string_utf8(env, errno_name(e), NAPI_AUTO_LENGTH, &code);
  napi_create_error(env, code, msg, &error);
  napi_create_int32(env, -e, &value);
  napi_set_named_property(env, error, "errno", value);
  napi_create_string_utf8(env, syscall_name, NAPI_AUTO_LENGTH, &value);
  napi_set_named_property(env, error, "syscall", value);
  if (path) {
    napi_create_string_utf8(env, path, NAPI_AUTO_LENGTH, &value);
    napi_set_named_property(env, error, "path", value);
  }
  return error;
}

/* Argument i as a newly allocated UTF-8 string; NULL for null/undefined when allowed. */
static int string_arg(napi_env env, napi_value *argv, size_t argc, size_t i, int nullable, char **out) {
  *out = NULL;
  napi_valuetype type = napi_undefined;
  if (i < argc) napi_typeof(env, argv[i], &type);
  if (type == napi_null || type == napi_undefined) {
    if (nullable) return 1;
    napi_throw_type_error(env, NULL, "cri-ledger native: a string argument is missing");
    return 0;
  }
  if (type != napi_string) {
    napi_throw_type_error(env, NULL, "cri-ledger native: expected a string argument");
    return 0;
  }
  size_t length = 0;
  napi_get_value_string_utf8(env, argv[i], NULL, 0, &length);
  *out = malloc(length + 1);
  if (!*out) {
    napi_throw_error(env, NULL, "cri-ledger native: out of memory");
    return 0;
  }
  napi_get_value_string_utf8(env, argv[i], *out, length + 1, &length);
  if (strlen(*out) != length) {
    /* An embedded NUL would silently cut the path short. */
    free(*out);
    *out = NULL;
    napi_throw_type_error(env, NULL, "cri-ledger native: a path must not contain NUL bytes");
    return 0;
  }
  return 1;
}

static int number_arg(napi_env env, napi_value *argv, size_t argc, size_t i, double *out) {
  napi_valuetype type = napi_undefined;
  if (i < argc) napi_typeof(env, argv[i], &type);
  if (type != napi_number) {
    napi_throw_type_error(env, NULL, "cri-ledger native: expected a number argument");
    return 0;
  }
  napi_get_value_double(env, argv[i], out);
  return 1;
}

/* mkfifo(path, mode): synchronous; throws on failure (EEXIST included). */
static napi_value js_mkfifo(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char *path;
  double mode;
  if (!string_arg(env, argv, argc, 0, 0, &path)) return NULL;
  if (!number_arg(env, argv, argc, 1, &mode)) {
    free(path);
    return NULL;
  }
  if (mkfifo(path, (mode_t)mode) != 0) napi_throw(env, make_error(env, errno, "mkfifo", path));
  free(path);
  return NULL;
}

/* setPipeSize(fd, bytes): fcntl(F_SETPIPE_SZ); returns the size the kernel gave (it rounds up). */
static napi_value js_set_pipe_size(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  double fd, size;
  if (!number_arg(env, argv, argc, 0, &fd) || !number_arg(env, argv, argc, 1, &size)) return NULL;
  int got = fcntl((int)fd, F_SETPIPE_SZ, (int)size);
  if (got < 0) {
    napi_throw(env, make_error(env, errno, "fcntl(F_SETPIPE_SZ)", NULL));
    return NULL;
  }
  napi_value out;
  napi_create_int32(env, got, &out);
  return out;
}

/* mknod(path, mode, major, minor): synchronous; mode carries the file type (S_IFCHR, ...). */
static napi_value js_mknod(napi_env env, napi_callback_info info) {
  size_t argc = 4;
  napi_value argv[4];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char *path;
  double mode, major_number, minor_number;
  if (!string_arg(env, argv, argc, 0, 0, &path)) return NULL;
  if (!number_arg(env, argv, argc, 1, &mode) || !number_arg(env, argv, argc, 2, &major_number) || !number_arg(env, argv, argc, 3, &minor_number)) {
    free(path);
    return NULL;
  }
  if (mknod(path, (mode_t)mode, makedev((unsigned int)major_number, (unsigned int)minor_number)) != 0) napi_throw(env, make_error(env, errno, "mknod", path));
  free(path);
  return NULL;
}

/* Arguments 0 and 1 as newly allocated strings: a path and an attribute name. */
static int path_and_name_args(napi_env env, napi_value *argv, size_t argc, char **path, char **name) {
  if (!string_arg(env, argv, argc, 0, 0, path)) return 0;
  if (string_arg(env, argv, argc, 1, 0, name)) return 1;
  free(*path);
  *path = NULL;
  return 0;
}

/* lsetxattr(path, name, value): synchronous; value is a Buffer; never follows a symlink. */
static napi_value js_lsetxattr(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char *path, *name;
  if (!path_and_name_args(env, argv, argc, &path, &name)) return NULL;
  bool is_buffer = false;
  if (argc >= 3) napi_is_buffer(env, argv[2], &is_buffer);
  if (!is_buffer) {
    free(path);
    free(name);
    napi_throw_type_error(env, NULL, "cri-ledger native: lsetxattr wants a Buffer value");
    return NULL;
  }
  void *data = NULL;
  size_t length = 0;
  napi_get_buffer_info(env, argv[2], &data, &length);
  if (lsetxattr(path, name, data, length, 0) != 0) napi_throw(env, make_error(env, errno, "lsetxattr", path));
  free(path);
  free(name);
  return NULL;
}

/* lgetxattr(path, name): the value as a Buffer, or undefined when the file has no such attribute. */
static napi_value js_lgetxattr(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char *path, *name;
  if (!path_and_name_args(env, argv, argc, &path, &name)) return NULL;
  char value[65536];
  ssize_t length = lgetxattr(path, name, value, sizeof value);
  napi_value result = NULL;
  if (length >= 0) {
    void *data;
    napi_create_buffer_copy(env, (size_t)length, value, &data, &result);
  } else if (errno == ENODATA) {
    napi_get_undefined(env, &result);
  } else {
    napi_throw(env, make_error(env, errno, "lgetxattr", path));
  }
  free(path);
  free(name);
  return result;
}

enum op { OP_MOUNT, OP_UMOUNT, OP_NETNS };

struct work {
  enum op op;
  char *source, *target, *fstype, *data;
  unsigned long flags;
  int error;
  const char *failed_syscall;
  napi_deferred deferred;
  napi_async_work handle;
};

static void free_work(struct work *w) {
  free(w->source);
  free(w->target);
  free(w->fstype);
  free(w->data);
  free(w);
}

/*
 * The netns thread: a new network namespace for this thread only, then a bind mount of
 * it onto the target file, which keeps the namespace alive after the thread exits.
 */
static void *netns_thread(void *arg) {
  struct work *w = arg;
  if (unshare(CLONE_NEWNET) != 0) {
    w->error = errno;
    w->failed_syscall = "unshare";
    return NULL;
  }
  char self[64];
  snprintf(self, sizeof self, "/proc/self/task/%ld/ns/net", (long)syscall(SYS_gettid));
  if (mount(self, w->target, NULL, MS_BIND, NULL) != 0) {
    w->error = errno;
    w->failed_syscall = "mount";
  }
  return NULL;
}

static void execute(napi_env env, void *data) {
  (void)env;
  struct work *w = data;
  switch (w->op) {
    case OP_MOUNT:
      if (mount(w->source, w->target, w->fstype, w->flags, w->data) != 0) {
        w->error = errno;
        w->failed_syscall = "mount";
      }
      break;
    case OP_UMOUNT:
      if (umount2(w->target, (int)w->flags) != 0) {
        w->error = errno;
        w->failed_syscall = "umount2";
      }
      break;
    case OP_NETNS: {
      pthread_t thread;
      int rc = pthread_create(&thread, NULL, netns_thread, w);
      if (rc != 0) {
        w->error = rc;
        w->failed_syscall = "pthread_create";
        break;
      }
      pthread_join(thread, NULL);
      break;
    }
  }
}

static void complete(napi_env env, napi_status status, void *data) {
  struct work *w = data;
  if (status != napi_ok) {
    napi_value error;
    napi_value msg;
    napi_create_string_utf8(env, "cri-ledger native: the operation was cancelled", NAPI_AUTO_LENGTH, &msg);
    napi_create_error(env, NULL, msg, &error);
    napi_reject_deferred(env, w->deferred, error);
  } else if (w->error != 0) {
    napi_reject_deferred(env, w->deferred, make_error(env, w->error, w->failed_syscall, w->target));
  } else {
    napi_value undefined;
    napi_get_undefined(env, &undefined);
    napi_resolve_deferred(env, w->deferred, undefined);
  }
  napi_delete_async_work(env, w->handle);
  free_work(w);
}

static napi_value queue_work(napi_env env, struct work *w) {
  napi_value promise, name;
  if (napi_create_promise(env, &w->deferred, &promise) != napi_ok ||
      napi_create_string_utf8(env, "cri-ledger:syscall", NAPI_AUTO_LENGTH, &name) != napi_ok ||
      napi_create_async_work(env, NULL, name, execute, complete, w, &w->handle) != napi_ok ||
      napi_queue_async_work(env, w->handle) != napi_ok) {
    free_work(w);
    napi_throw_error(env, NULL, "cri-ledger native: cannot queue the operation");
    return NULL;
  }
  return promise;
}

/* A zeroed work item for `op`; NULL with a JavaScript error thrown when out of memory. */
static struct work *new_work(napi_env env, enum op op) {
  struct work *w = calloc(1, sizeof *w);
  if (!w) {
    napi_throw_error(env, NULL, "cri-ledger native: out of memory");
    return NULL;
  }
  w->op = op;
  return w;
}

/* mount(source, target, fstype, flags, data) -> Promise<void>; source, fstype, data may be null. */
static napi_value js_mount(napi_env env, napi_callback_info info) {
  size_t argc = 5;
  napi_value argv[5];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct work *w = new_work(env, OP_MOUNT);
  if (!w) return NULL;
  double flags;
  if (!string_arg(env, argv, argc, 0, 1, &w->source) || !string_arg(env, argv, argc, 1, 0, &w->target) ||
      !string_arg(env, argv, argc, 2, 1, &w->fstype) || !number_arg(env, argv, argc, 3, &flags) ||
      !string_arg(env, argv, argc, 4, 1, &w->data)) {
    free_work(w);
    return NULL;
  }
  w->flags = (unsigned long)flags;
  return queue_work(env, w);
}

/* umount2(target, flags) -> Promise<void>. */
static napi_value js_umount2(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct work *w = new_work(env, OP_UMOUNT);
  if (!w) return NULL;
  double flags;
  if (!string_arg(env, argv, argc, 0, 0, &w->target) || !number_arg(env, argv, argc, 1, &flags)) {
    free_work(w);
    return NULL;
  }
  w->flags = (unsigned long)flags;
  return queue_work(env, w);
}

/* bindNewNetns(target) -> Promise<void>: a new network namespace bind-mounted on target (an existing file). */
static napi_value js_bind_new_netns(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  struct work *w = new_work(env, OP_NETNS);
  if (!w) return NULL;
  if (!string_arg(env, argv, argc, 0, 0, &w->target)) {
    free_work(w);
    return NULL;
  }
  return queue_work(env, w);
}

/*
 * socketInNetns(netnsPath, family) -> fd: an unconnected, non-blocking TCP socket (family
 * 4 or 6) that belongs to the network namespace at netnsPath (a pod's). A socket keeps
 * the namespace it was made in, so the calling thread (Node's main thread) enters the
 * namespace for the socket(2) call only and goes back before returning, on every path.
 * No JavaScript runs meanwhile, and setns(CLONE_NEWNET) moves this thread alone, so
 * nothing else ever sees the pod's namespace. If the way back fails, the process aborts:
 * going on in a pod's namespace would send the service's own traffic there.
 */
static napi_value js_socket_in_netns(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  CHECK(napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  char *path;
  double family = 0;
  if (!string_arg(env, argv, argc, 0, 0, &path)) return NULL;
  if (!number_arg(env, argv, argc, 1, &family)) {
    free(path);
    return NULL;
  }
  if (family != 4 && family != 6) {
    free(path);
    napi_throw_type_error(env, NULL, "cri-ledger native: family must be 4 or 6");
    return NULL;
  }
  int target = open(path, O_RDONLY | O_CLOEXEC);
  if (target < 0) {
    napi_throw(env, make_error(env, errno, "open", path));
    free(path);
    return NULL;
  }
  int own = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (own < 0) {
    int e = errno;
    close(target);
    napi_throw(env, make_error(env, e, "open", "/proc/thread-self/ns/net"));
    free(path);
    return NULL;
  }
  int fd = -1, e = 0;
  const char *failed = NULL;
  if (setns(target, CLONE_NEWNET) != 0) {
    e = errno;
    failed = "setns";
  } else {
    fd = socket(family == 6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      e = errno;
      failed = "socket";
    }
    if (setns(own, CLONE_NEWNET) != 0) {
      perror("cri-ledger native: cannot return to the service's own network namespace");
      abort();
    }
  }
  close(own);
  close(target);
  napi_value result = NULL;
  if (failed) napi_throw(env, make_error(env, e, failed, path));
  else napi_create_int32(env, fd, &result);
  free(path);
  return result;
}

static void set_function(napi_env env, napi_value exports, const char *name, napi_callback fn) {
  napi_value value;
  napi_create_function(env, name, NAPI_AUTO_LENGTH, fn, NULL, &value);
  napi_set_named_property(env, exports, name, value);
}

static void set_constant(napi_env env, napi_value object, const char *name, double number) {
  napi_value value;
  napi_create_double(env, number, &value);
  napi_set_named_property(env, object, name, value);
}

static napi_value init(napi_env env, napi_value exports) {
  set_function(env, exports, "mkfifo", js_mkfifo);
  set_function(env, exports, "mknod", js_mknod);
  set_function(env, exports, "setPipeSize", js_set_pipe_size);
  set_function(env, exports, "lsetxattr", js_lsetxattr);
  set_function(env, exports, "lgetxattr", js_lgetxattr);
  set_function(env, exports, "mount", js_mount);
  set_function(env, exports, "umount2", js_umount2);
  set_function(env, exports, "bindNewNetns", js_bind_new_netns);
  set_function(env, exports, "socketInNetns", js_socket_in_netns);
  /* The flag values from the C headers, so TypeScript never hard-codes them. */
  napi_value flags;
  napi_create_object(env, &flags);
  set_constant(env, flags, "MS_RDONLY", MS_RDONLY);
  set_constant(env, flags, "MS_NOSUID", MS_NOSUID);
  set_constant(env, flags, "MS_NODEV", MS_NODEV);
  set_constant(env, flags, "MS_NOEXEC", MS_NOEXEC);
  set_constant(env, flags, "MS_BIND", MS_BIND);
  set_constant(env, flags, "MS_REC", MS_REC);
  set_constant(env, flags, "MS_PRIVATE", MS_PRIVATE);
  set_constant(env, flags, "MS_SLAVE", MS_SLAVE);
  set_constant(env, flags, "MS_SHARED", MS_SHARED);
  set_constant(env, flags, "MNT_DETACH", MNT_DETACH);
  set_constant(env, flags, "S_IFCHR", S_IFCHR);
  set_constant(env, flags, "S_IFBLK", S_IFBLK);
  set_constant(env, flags, "S_IFIFO", S_IFIFO);
  napi_set_named_property(env, exports, "flags", flags);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

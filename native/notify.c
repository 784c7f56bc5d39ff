/*
 * sd_notify for cri-ledger: one datagram to $NOTIFY_SOCKET (READY=1, STOPPING=1, STATUS=...),
 * the protocol systemd's Type=notify units speak. Node has no unix datagram sockets, so
 * this is the one call made natively. A path starting with '@' is an abstract socket.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>
#include <node_api.h>

static napi_value throw_errno(napi_env env, int e, const char *what) {
  char message[256];
  snprintf(message, sizeof message, "%s: %s", what, strerror(e));
  napi_throw_error(env, NULL, message);
  return NULL;
}

/* notify(socketPath, message): sends `message` as one datagram to `socketPath`. */
static napi_value js_notify(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2];
  napi_get_cb_info(env, info, &argc, argv, NULL, NULL);
  char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
  char message[4096];
  size_t path_len = 0, message_len = 0;
  if (argc < 2 || napi_get_value_string_utf8(env, argv[0], path, sizeof path, &path_len) != napi_ok ||
      napi_get_value_string_utf8(env, argv[1], message, sizeof message, &message_len) != napi_ok) {
    napi_throw_type_error(env, NULL, "notify(socketPath: string, message: string)");
    return NULL;
  }
  if (path_len == 0 || path_len >= sizeof path - 1) return throw_errno(env, EINVAL, "NOTIFY_SOCKET");
  struct sockaddr_un addr;
  memset(&addr, 0, sizeof addr);
  addr.sun_family = AF_UNIX;
  memcpy(addr.sun_path, path, path_len);
  if (path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t addr_len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + path_len + (path[0] == '@' ? 0 : 1));
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return throw_errno(env, errno, "socket");
  ssize_t sent = sendto(fd, message, message_len, MSG_NOSIGNAL, (struct sockaddr *)&addr, addr_len);
  int e = errno;
  close(fd);
  if (sent < 0) return throw_errno(env, e, "sendto NOTIFY_SOCKET");
  return NULL;
}

static napi_value init(napi_env env, napi_value exports) {
  napi_value fn;
  napi_create_function(env, "notify", NAPI_AUTO_LENGTH, js_notify, NULL, &fn);
  napi_set_named_property(env, exports, "notify", fn);
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, init)

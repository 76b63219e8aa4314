/**
 * The usage text, printed on stderr for no arguments and on stdout for
 * `--help`. Its first lines are balance 3.54's synopsis.
 *
 * @example
 * ```ts
 * console.error(USAGE);
 * ```
 */
export const USAGE = `usage:
  balance [-b addr] [-B addr] [-t sec] [-T sec] [-w N] [-adfpHM6] [-L] [--grace sec] \\
          [-F file] [--check-config] [--log-file file] [--syslog host[:port]] [--log-connections] \\
          [--resolve-interval sec] [--resolver addr[:port]] [--metrics [addr:]port] \\
          [--proxy-protocol v1|v2] [--accept-proxy [--proxy-from spec]] \\
          [--allow spec] [--deny spec] [--max-per-client N] [--rate-per-client N[/sec]] \\
          [--client-table N] [--sni pattern=@name ... [--sni-default @name]] \\
          [--udp | --udp-only] [--udp-timeout sec] [--udp-responses N] [--udp-max-sessions N] \\
          [--ftp [--ftp-address addr] [--ftp-data-ports lo-hi]] \\
          [--engine native|runtime] \\
          [--check [--check-interval sec] [--check-timeout sec] [--rise N] [--fall N] \\
           [--check-send str] [--check-expect str] [--check-exec cmd]] \\
          port [h1[:p1[:maxc1[:weight1[:dis]]]] [!%+]] [@name] [ ... hN[:pN[:maxcN[:weightN[:dis]]]]]
  balance [-b addr] -i [-d] port
  balance [-b addr] -c cmd  [-d] port
  balance --list
  balance --help | --version

  -6        listen on an IPv6 socket
  -a        autodisable a channel whose connect fails
  -b addr   listen only on this address
  -B addr   source address for outgoing connections
  -c cmd    send a control command to the instance on port
  -d        debug: trace every decision on stderr
  -f        stay in the foreground
  -F FILE   read options and channels from FILE (command-line words, '#' comments);
            also --config FILE; SIGHUP or the reload command reads it again
  -H        hash failover: try the other channels of a Hash group
  -i        interactive control of the instance on port
  -L        least connection: every RR group picks the channel with the fewest
            connections for its weight
  -M        accepted for compatibility (balance 3.54's shared memory)
  -p        packet dump of all relayed data on stdout
  -t sec    connect timeout (default 5, at least 1)
  -T sec    idle timeout (default 0 = never)
  -w N      worker threads sharing the port and one state (default 1; auto = one per core);
            also --workers N
  --log-file FILE  log to FILE (in the background instead of syslog)
  --syslog HOST[:PORT]  log to this syslog server over UDP (default port 514)
  --log-connections  log one line per connection when it ends (client, channel, connect
                   time, duration, bytes each way, how it ended)
  --grace SEC      on SIGTERM/SIGINT let open connections finish for SEC (default 10);
                   a second signal closes them at once
  --list           the running instances this user may control (port, address, pid, user)
  --check-config   parse and resolve everything, print nothing, exit 0 (or the error)
  --check          health checks: connect to every channel; skip the down ones until they answer
  --check-interval SEC  between two checks of a settled channel (default 2, at least 0.1)
  --check-timeout SEC   a check not passed by then failed (default the interval, at most -t)
  --rise N         consecutive passed checks that make a channel up (default 2)
  --fall N         consecutive failed checks that make a channel down (default 3)
  --check-send STR      send STR after connecting (escapes \\r \\n \\t \\\\ \\xNN)
  --check-expect STR    pass only once STR (same escapes) arrives
  --check-exec CMD      run CMD (no shell) instead of connecting; exit 0 passes; env
                   BALANCE_CHECK_HOST, BALANCE_CHECK_PORT, BALANCE_CHECK_GROUP, BALANCE_CHECK_CHANNEL
  --resolve-interval SEC  look channel host names up again every SEC; a new address
                   takes new connections, open ones stay (default 30; 0 = only at start)
  --resolver ADDR[:PORT]  ask this DNS server (default: the system's resolver; port 53)
  --metrics [ADDR:]PORT   serve Prometheus metrics (GET /metrics) and the show --json
                   document (GET /status) over HTTP (default address 127.0.0.1)
  --proxy-protocol v1|v2  start every connection to a channel with a PROXY header
                   (v1 text, v2 binary) carrying the client's address and port;
                   e.g. to nginx channels that have "listen 8080 proxy_protocol;"
  --accept-proxy   every client must start with a PROXY header (v1 or v2) within -t,
                   whose address is then the client's; others are closed
  --allow SPEC     admit the clients in SPEC: IPv4 or IPv6 addresses and CIDR prefixes,
                   comma-separated (10.0.0.0/8,2001:db8::/32), or all
  --deny SPEC      close the clients in SPEC at once; --allow and --deny are checked in
                   order, the first match decides, a client none matches is allowed
  --max-per-client N    at most N open connections per client (an IPv4 address or an IPv6 /64)
  --rate-per-client N[/SEC]  at most N new connections per client per SEC seconds (default 1),
                   N of them at once (a token bucket)
  --client-table N      clients the limits remember (default 65536); when full, the least
                   recently seen is forgotten
  --proxy-from SPEC     with --accept-proxy: only peers in SPEC may connect (send a PROXY header)
  --sni PATTERN=@NAME   send a client whose TLS ClientHello names PATTERN to service @NAME,
                   without terminating TLS; PATTERN: a host name, or *.suffix for one or
                   more labels before suffix (an exact name wins, then the longest suffix);
                   repeatable. The ClientHello (16 KiB at most) must come within -t
  --sni-default @NAME   where clients go with no server name, one no --sni matches, or a
                   first byte that is not TLS (default: the default service)
  --udp            serve UDP on the same address and port as well as TCP, over the same
                   channels: a client address and port is a session, tied to one channel
  --udp-only       serve UDP and no TCP (--check then needs --check-send: one datagram)
  --udp-timeout SEC     end a UDP session no datagram crossed for SEC (default 30)
  --udp-responses N     end a UDP session once its channel sent N datagrams for each of
                   the client's (default 0 = never; 1 for DNS, as nginx's proxy_responses)
  --udp-max-sessions N  at most N UDP sessions at once (default: as descriptors allow);
                   a datagram that would open one more is dropped and counted
  --ftp          FTP: data connections follow their control connection; PASV/EPSV replies
                   and PORT/EPRT commands are rewritten to name balance's data listeners
  --ftp-address ADDR    with --ftp: the IPv4 address PASV replies name (balance's public
                   address behind NAT; default: the address the client connected to)
  --ftp-data-ports LO-HI  with --ftp: the ports data listeners use (default: the OS's choice)
  --engine native|runtime  what moves TCP bytes: the runtime's sockets (default), or
                   balance's own epoll loop on Linux system calls (x86-64 and arm64;
                   elsewhere, or without FFI, the runtime's, said in one info line)
  --help, -h     this text
  --version, -V  the version

  channel: host[:port[:maxc[:weight[:dis]]]] or [ipv6]:port:maxc:weight; '!' ends an RR
  group, '%' a Hash group, '+' a least-connection group. weight 0-256 (default 1):
  an RR group interleaves channels in proportion to it (smooth weighted round
  robin), a Hash group hashes consistently by it; 0 takes no new connections.
  ':dis' starts the channel disabled. '@NAME' starts a named service: the groups
  after it, up to the next '@NAME', are its failover chain (the groups before the first
  are the default service); --sni sends clients to it.
  Example: balance -f 8080 web1:80::3 web2:80 ! backup:80`;

/**
 * The second line of a command-line mistake, after the one naming it, as GNU
 * tools write it.
 *
 * @example
 * ```ts
 * console.error(`balance: unknown option '-x'\n${TRY_HELP}`);
 * ```
 */
export const TRY_HELP = "Try 'balance --help'.";

{%- from "map.jinja" import hl with context %}
{%- set app = hl.users.app %}
# Gate: a row written through HAProxy's write port is read back through its
# read port (from a replica), verifying the cluster's certificate when the pgbouncer
# link is under TLS (halite.view host roundtrip_dsn). Reports no changes: it only checks.
haproxy-write-read-roundtrip:
  cmd.run:
    - stateful: True
    - timeout: 240
    - env:
        PGPASSWORD: {{ app.password|json }}
        PGCONNECT_TIMEOUT: "3"
    - name: |
        token="{{ grains['id'] }}-$(date +%s%N)"
        w={{ hl.host.roundtrip_dsn.write|quote }}
        r={{ hl.host.roundtrip_dsn.read|quote }}
        for i in $(seq 1 45); do
          psql "$w" -qAtX -v ON_ERROR_STOP=1 -c "CREATE TABLE IF NOT EXISTS halite_roundtrip(token text PRIMARY KEY, at timestamptz DEFAULT now())" \
               -c "INSERT INTO halite_roundtrip(token) VALUES ('$token')" >/dev/null 2>&1 && break
          sleep 2
        done
        for i in $(seq 1 60); do
          got=$(psql "$r" -qAtX -c "SELECT host(inet_server_addr()) || ' ' || pg_is_in_recovery() FROM halite_roundtrip WHERE token = '$token'" 2>/dev/null)
          case "$got" in
            *" true") echo "changed=no comment='row $token written through :{{ hl.haproxy.write_port }} read back through :{{ hl.haproxy.read_port }} from replica ${got% *}'"; exit 0;;
          esac
          sleep 1
        done
        echo "changed=no comment='row $token written through :{{ hl.haproxy.write_port }} was not read back from a replica through :{{ hl.haproxy.read_port }} within 60 s (last answer: ${got:-none})'"
        exit 1

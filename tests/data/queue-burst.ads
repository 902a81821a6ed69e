Arguments = "0"
ClusterId = 101
Cmd = "/home/alice/analysis/run.sh"
DiskUsage = 1000
EnteredCurrentStatus = 1765100000
GlobalJobId = "submit.example.org#101.0#1765100000"
ImageSize = 1000
JobPrio = 0
JobStatus = 1
JobUniverse = 5
MyType = "Job"
Owner = "alice"
ProcId = 0
QDate = 1765100000
RequestCpus = 1
RequestDisk = DiskUsage
RequestMemory = ifthenelse(MemoryUsage =!= undefined,MemoryUsage,2048)
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)
TargetAnnexName = "burst"
TargetType = "Machine"
User = "alice@example.org"

Arguments = "1"
ClusterId = 101
Cmd = "/home/alice/analysis/run.sh"
DiskUsage = 1000
EnteredCurrentStatus = 1765100001
GlobalJobId = "submit.example.org#101.1#1765100000"
ImageSize = 1000
JobPrio = 0
JobStatus = 1
JobUniverse = 5
MyType = "Job"
Owner = "alice"
ProcId = 1
QDate = 1765100000
RequestCpus = 1
RequestDisk = DiskUsage
RequestMemory = ifthenelse(MemoryUsage =!= undefined,MemoryUsage,2048)
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)
TargetAnnexName = "burst"
TargetType = "Machine"
User = "alice@example.org"

Arguments = "2"
ClusterId = 101
Cmd = "/home/alice/analysis/run.sh"
DiskUsage = 1000
EnteredCurrentStatus = 1765100002
GlobalJobId = "submit.example.org#101.2#1765100000"
ImageSize = 1000
JobPrio = 0
JobStatus = 1
JobUniverse = 5
MyType = "Job"
Owner = "alice"
ProcId = 2
QDate = 1765100000
RequestCpus = 1
RequestDisk = DiskUsage
RequestMemory = ifthenelse(MemoryUsage =!= undefined,MemoryUsage,2048)
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)
TargetAnnexName = "burst"
TargetType = "Machine"
User = "alice@example.org"

Arguments = "3"
ClusterId = 101
Cmd = "/home/alice/analysis/run.sh"
DiskUsage = 1000
EnteredCurrentStatus = 1765100003
GlobalJobId = "submit.example.org#101.3#1765100000"
ImageSize = 1000
JobPrio = 0
JobStatus = 1
JobUniverse = 5
MyType = "Job"
Owner = "alice"
ProcId = 3
QDate = 1765100000
RequestCpus = 1
RequestDisk = DiskUsage
RequestMemory = ifthenelse(MemoryUsage =!= undefined,MemoryUsage,2048)
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)
TargetAnnexName = "burst"
TargetType = "Machine"
User = "alice@example.org"

Arguments = "4"
ClusterId = 101
Cmd = "/home/alice/analysis/run.sh"
DiskUsage = 1000
EnteredCurrentStatus = 1765100004
GlobalJobId = "submit.example.org#101.4#1765100000"
ImageSize = 1000
JobPrio = 0
JobStatus = 1
JobUniverse = 5
MyType = "Job"
Owner = "alice"
ProcId = 4
QDate = 1765100000
RequestCpus = 1
RequestDisk = DiskUsage
RequestMemory = ifthenelse(MemoryUsage =!= undefined,MemoryUsage,2048)
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)
TargetAnnexName = "burst"
TargetType = "Machine"
User = "alice@example.org"

Arguments = "5"
ClusterId = 101
Cmd = "/home/alice/analysis/run.sh"
DiskUsage = 1000
EnteredCurrentStatus = 1765100005
GlobalJobId = "submit.example.org#101.5#1765100000"
ImageSize = 1000
JobPrio = 0
JobStatus = 1
JobUniverse = 5
MyType = "Job"
Owner = "alice"
ProcId = 5
QDate = 1765100000
RequestCpus = 1
RequestDisk = DiskUsage
RequestMemory = ifthenelse(MemoryUsage =!= undefined,MemoryUsage,2048)
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)
TargetAnnexName = "burst"
TargetType = "Machine"
User = "alice@example.org"

Arguments = "0"
ClusterId = 102
Cmd = "/home/alice/analysis/run.sh"
DiskUsage = 1000
EnteredCurrentStatus = 1765100000
GlobalJobId = "submit.example.org#102.0#1765100000"
ImageSize = 1000
JobPrio = 0
JobStatus = 1
JobUniverse = 5
MayUseAWS = true
MyType = "Job"
Owner = "alice"
ProcId = 0
QDate = 1765100000
RequestCpus = 4
RequestDisk = DiskUsage
RequestMemory = 8192
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)
TargetType = "Machine"
User = "alice@example.org"

Arguments = "1"
ClusterId = 102
Cmd = "/home/alice/analysis/run.sh"
DiskUsage = 1000
EnteredCurrentStatus = 1765100001
GlobalJobId = "submit.example.org#102.1#1765100000"
ImageSize = 1000
JobPrio = 0
JobStatus = 1
JobUniverse = 5
MayUseAWS = true
MyType = "Job"
Owner = "alice"
ProcId = 1
QDate = 1765100000
RequestCpus = 4
RequestDisk = DiskUsage
RequestMemory = 8192
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)
TargetType = "Machine"
User = "alice@example.org"

Arguments = "2"
ClusterId = 102
Cmd = "/home/alice/analysis/run.sh"
DiskUsage = 1000
EnteredCurrentStatus = 1765100002
GlobalJobId = "submit.example.org#102.2#1765100000"
ImageSize = 1000
JobPrio = 0
JobStatus = 1
JobUniverse = 5
MayUseAWS = true
MyType = "Job"
Owner = "alice"
ProcId = 2
QDate = 1765100000
RequestCpus = 4
RequestDisk = DiskUsage
RequestMemory = 8192
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)
TargetType = "Machine"
User = "alice@example.org"

Arguments = "3"
ClusterId = 102
Cmd = "/home/alice/analysis/run.sh"
DiskUsage = 1000
EnteredCurrentStatus = 1765100003
GlobalJobId = "submit.example.org#102.3#1765100000"
ImageSize = 1000
JobPrio = 0
JobStatus = 1
JobUniverse = 5
MayUseAWS = true
MyType = "Job"
Owner = "alice"
ProcId = 3
QDate = 1765100000
RequestCpus = 4
RequestDisk = DiskUsage
RequestMemory = 8192
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)
TargetType = "Machine"
User = "alice@example.org"

Arguments = "0"
ClusterId = 103
Cmd = "/home/alice/analysis/run.sh"
DiskUsage = 1000
EnteredCurrentStatus = 1765100000
GlobalJobId = "submit.example.org#103.0#1765100000"
ImageSize = 1000
JobPrio = 0
JobStatus = 1
JobUniverse = 5
MyType = "Job"
Owner = "alice"
ProcId = 0
QDate = 1765100000
RequestCpus = 1
RequestDisk = DiskUsage
RequestMemory = 524288
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)
TargetAnnexName = "burst"
TargetType = "Machine"
User = "alice@example.org"

Arguments = "1"
ClusterId = 103
Cmd = "/home/alice/analysis/run.sh"
DiskUsage = 1000
EnteredCurrentStatus = 1765100001
GlobalJobId = "submit.example.org#103.1#1765100000"
ImageSize = 1000
JobPrio = 0
JobStatus = 1
JobUniverse = 5
MyType = "Job"
Owner = "alice"
ProcId = 1
QDate = 1765100000
RequestCpus = 1
RequestDisk = DiskUsage
RequestMemory = 524288
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)
TargetAnnexName = "burst"
TargetType = "Machine"
User = "alice@example.org"

Arguments = "2"
ClusterId = 103
Cmd = "/home/alice/analysis/run.sh"
DiskUsage = 1000
EnteredCurrentStatus = 1765100002
GlobalJobId = "submit.example.org#103.2#1765100000"
ImageSize = 1000
JobPrio = 0
JobStatus = 1
JobUniverse = 5
MyType = "Job"
Owner = "alice"
ProcId = 2
QDate = 1765100000
RequestCpus = 1
RequestDisk = DiskUsage
RequestMemory = 524288
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)
TargetAnnexName = "burst"
TargetType = "Machine"
User = "alice@example.org"

Arguments = "0"
ClusterId = 104
Cmd = "/home/alice/analysis/run.sh"
DiskUsage = 1000
EnteredCurrentStatus = 1765100000
GlobalJobId = "submit.example.org#104.0#1765100000"
ImageSize = 1000
JobPrio = 0
JobStatus = 1
JobUniverse = 5
MyType = "Job"
Owner = "alice"
ProcId = 0
QDate = 1765100000
RequestCpus = 1
RequestDisk = DiskUsage
RequestGPUs = 1
RequestMemory = ifthenelse(MemoryUsage =!= undefined,MemoryUsage,2048)
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && (TARGET.GPUs >= RequestGPUs) && (TARGET.HasFileTransfer)
TargetAnnexName = "burst"
TargetType = "Machine"
User = "alice@example.org"

Arguments = "1"
ClusterId = 104
Cmd = "/home/alice/analysis/run.sh"
DiskUsage = 1000
EnteredCurrentStatus = 1765100001
GlobalJobId = "submit.example.org#104.1#1765100000"
ImageSize = 1000
JobPrio = 0
JobStatus = 1
JobUniverse = 5
MyType = "Job"
Owner = "alice"
ProcId = 1
QDate = 1765100000
RequestCpus = 1
RequestDisk = DiskUsage
RequestGPUs = 1
RequestMemory = ifthenelse(MemoryUsage =!= undefined,MemoryUsage,2048)
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && (TARGET.GPUs >= RequestGPUs) && (TARGET.HasFileTransfer)
TargetAnnexName = "burst"
TargetType = "Machine"
User = "alice@example.org"

Arguments = "0"
ClusterId = 105
Cmd = "/home/alice/analysis/run.sh"
DiskUsage = 1000
EnteredCurrentStatus = 1765100000
GlobalJobId = "submit.example.org#105.0#1765100000"
ImageSize = 1000
JobPrio = 0
JobStatus = 1
JobUniverse = 5
MyType = "Job"
Owner = "alice"
ProcId = 0
QDate = 1765100000
RequestCpus = 1
RequestDisk = DiskUsage
RequestMemory = ifthenelse(MemoryUsage =!= undefined,MemoryUsage,2048)
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)
TargetType = "Machine"
User = "alice@example.org"

Arguments = "1"
ClusterId = 105
Cmd = "/home/alice/analysis/run.sh"
DiskUsage = 1000
EnteredCurrentStatus = 1765100001
GlobalJobId = "submit.example.org#105.1#1765100000"
ImageSize = 1000
JobPrio = 0
JobStatus = 1
JobUniverse = 5
MyType = "Job"
Owner = "alice"
ProcId = 1
QDate = 1765100000
RequestCpus = 1
RequestDisk = DiskUsage
RequestMemory = ifthenelse(MemoryUsage =!= undefined,MemoryUsage,2048)
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)
TargetType = "Machine"
User = "alice@example.org"

Arguments = "0"
ClusterId = 106
Cmd = "/home/alice/analysis/run.sh"
DiskUsage = 1000
EnteredCurrentStatus = 1765100000
GlobalJobId = "submit.example.org#106.0#1765100000"
ImageSize = 1000
JobPrio = 0
JobStatus = 1
JobUniverse = 5
MyType = "Job"
Owner = "alice"
ProcId = 0
QDate = 1765100000
RequestCpus = 1
RequestDisk = DiskUsage
RequestMemory = ifthenelse(MemoryUsage =!= undefined,MemoryUsage,2048)
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)
TargetAnnexName = "other"
TargetType = "Machine"
User = "alice@example.org"

Arguments = "1"
ClusterId = 106
Cmd = "/home/alice/analysis/run.sh"
DiskUsage = 1000
EnteredCurrentStatus = 1765100001
GlobalJobId = "submit.example.org#106.1#1765100000"
ImageSize = 1000
JobPrio = 0
JobStatus = 1
JobUniverse = 5
MyType = "Job"
Owner = "alice"
ProcId = 1
QDate = 1765100000
RequestCpus = 1
RequestDisk = DiskUsage
RequestMemory = ifthenelse(MemoryUsage =!= undefined,MemoryUsage,2048)
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)
TargetAnnexName = "other"
TargetType = "Machine"
User = "alice@example.org"

Arguments = "0"
ClusterId = 107
Cmd = "/home/bob/analysis/run.sh"
DiskUsage = 1000
EnteredCurrentStatus = 1765100000
GlobalJobId = "submit.example.org#107.0#1765100000"
ImageSize = 1000
JobPrio = 0
JobStatus = 1
JobUniverse = 5
MyType = "Job"
Owner = "bob"
ProcId = 0
QDate = 1765100000
RequestCpus = 1
RequestDisk = DiskUsage
RequestMemory = ifthenelse(MemoryUsage =!= undefined,MemoryUsage,2048)
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)
TargetAnnexName = "burst"
TargetType = "Machine"
User = "bob@example.org"

Arguments = "1"
ClusterId = 107
Cmd = "/home/bob/analysis/run.sh"
DiskUsage = 1000
EnteredCurrentStatus = 1765100001
GlobalJobId = "submit.example.org#107.1#1765100000"
ImageSize = 1000
JobPrio = 0
JobStatus = 1
JobUniverse = 5
MyType = "Job"
Owner = "bob"
ProcId = 1
QDate = 1765100000
RequestCpus = 1
RequestDisk = DiskUsage
RequestMemory = ifthenelse(MemoryUsage =!= undefined,MemoryUsage,2048)
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)
TargetAnnexName = "burst"
TargetType = "Machine"
User = "bob@example.org"

Arguments = "2"
ClusterId = 107
Cmd = "/home/bob/analysis/run.sh"
DiskUsage = 1000
EnteredCurrentStatus = 1765100002
GlobalJobId = "submit.example.org#107.2#1765100000"
ImageSize = 1000
JobPrio = 0
JobStatus = 1
JobUniverse = 5
MyType = "Job"
Owner = "bob"
ProcId = 2
QDate = 1765100000
RequestCpus = 1
RequestDisk = DiskUsage
RequestMemory = ifthenelse(MemoryUsage =!= undefined,MemoryUsage,2048)
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)
TargetAnnexName = "burst"
TargetType = "Machine"
User = "bob@example.org"

Arguments = "3"
ClusterId = 107
Cmd = "/home/bob/analysis/run.sh"
DiskUsage = 1000
EnteredCurrentStatus = 1765100003
GlobalJobId = "submit.example.org#107.3#1765100000"
ImageSize = 1000
JobPrio = 0
JobStatus = 1
JobUniverse = 5
MyType = "Job"
Owner = "bob"
ProcId = 3
QDate = 1765100000
RequestCpus = 1
RequestDisk = DiskUsage
RequestMemory = ifthenelse(MemoryUsage =!= undefined,MemoryUsage,2048)
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)
TargetAnnexName = "burst"
TargetType = "Machine"
User = "bob@example.org"

Arguments = "4"
ClusterId = 107
Cmd = "/home/bob/analysis/run.sh"
DiskUsage = 1000
EnteredCurrentStatus = 1765100004
GlobalJobId = "submit.example.org#107.4#1765100000"
ImageSize = 1000
JobPrio = 0
JobStatus = 1
JobUniverse = 5
MyType = "Job"
Owner = "bob"
ProcId = 4
QDate = 1765100000
RequestCpus = 1
RequestDisk = DiskUsage
RequestMemory = ifthenelse(MemoryUsage =!= undefined,MemoryUsage,2048)
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)
TargetAnnexName = "burst"
TargetType = "Machine"
User = "bob@example.org"

Arguments = "0"
ClusterId = 108
Cmd = "/home/alice/analysis/run.sh"
DiskUsage = 1000
EnteredCurrentStatus = 1765100000
GlobalJobId = "submit.example.org#108.0#1765100000"
ImageSize = 1000
JobPrio = 0
JobStatus = 2
JobUniverse = 5
MyType = "Job"
Owner = "alice"
ProcId = 0
QDate = 1765100000
RemoteHost = "slot1_1@ip-10-0-0-1.ec2.internal"
RequestCpus = 1
RequestDisk = DiskUsage
RequestMemory = ifthenelse(MemoryUsage =!= undefined,MemoryUsage,2048)
Requirements = (TARGET.Arch == "X86_64") && (TARGET.OpSys == "LINUX") && (TARGET.Disk >= RequestDisk) && (TARGET.Memory >= RequestMemory) && (TARGET.HasFileTransfer)
TargetAnnexName = "burst"
TargetType = "Machine"
User = "alice@example.org"
